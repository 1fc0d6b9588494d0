package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/internal/bridge/apikey"
	"github.com/customdata-worker/customdata-worker/internal/bridge/webhook"
	"github.com/customdata-worker/customdata-worker/issuer"
)

// Routes, as net/http ServeMux patterns.
const (
	RouteSupabase = "POST /hooks/supabase/custom-access-token"
	RouteHydra    = "POST /hooks/hydra/token"
	RouteGeneric  = "GET /v1/users/{userId}/custom-data"
)

// Defaults of Config.
const (
	DefaultClaimName = "custom_data"
	// DefaultTimeout leaves room inside Supabase Auth's 5 s for an HTTP
	// hook (supabase/auth internal/hooks: defaultHTTPHookTimeout).
	DefaultTimeout = 2 * time.Second
	DefaultMaxBody = 1 << 20
)

// answerTime is how long writing an answer may take once the data was
// read (or the wait for it ended).
const answerTime = 2 * time.Second

// Config is what every endpoint shares. The zero value is the defaults.
type Config struct {
	// ClaimName is the claim the custom data goes under (default
	// "custom_data"), as relaxed Extended JSON; ClaimName+"_oversize" is
	// true when the document is over the size limit.
	ClaimName string
	// Timeout bounds one call's wait for the custom data (default 2s).
	Timeout time.Duration
	// MaxBody bounds a request body (default 1 MiB).
	MaxBody int64
}

func (c *Config) setDefaults() {
	if c.ClaimName == "" {
		c.ClaimName = DefaultClaimName
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxBody == 0 {
		c.MaxBody = DefaultMaxBody
	}
}

// reservedClaims are set or checked by the identity servers themselves:
// Supabase Auth's access-token claims (required and optional), Hydra's
// reserved access-token claims, and the OpenID Connect ID-token claims.
var reservedClaims = []string{
	"iss", "aud", "exp", "iat", "sub", "role", "aal", "session_id", "email", "phone", "is_anonymous",
	"jti", "nbf", "app_metadata", "user_metadata", "amr", "client_id", "scope",
	"scp", "ext",
	"auth_time", "nonce", "acr", "azp", "at_hash", "c_hash", "rat", "sid",
}

// Validate checks the configuration (after defaults).
func (c Config) Validate() error {
	c.setDefaults()
	if c.Timeout < 0 || c.MaxBody < 0 {
		return fmt.Errorf("bridge: negative timeout or body limit")
	}
	if strings.TrimSpace(c.ClaimName) != c.ClaimName {
		return fmt.Errorf("bridge: claim name %q has surrounding spaces", c.ClaimName)
	}
	for _, n := range []string{c.ClaimName, c.ClaimName + "_oversize"} {
		if slices.Contains(reservedClaims, n) {
			return fmt.Errorf("%w: %q", ErrReservedClaim, n)
		}
	}
	return nil
}

// Server serves the hooks. Build it with New, serve Handler, and run Run
// when LOGIN events are configured (WithLogins).
type Server struct {
	data     issuer.Getter
	cfg      Config
	log      zerolog.Logger
	m        *metrics
	supabase *webhook.Verifier
	hydra    *apikey.HeaderKey
	hydraID  bool
	tokens   apikey.Set
	certs    *clientNames // nil: client certificates do not authenticate
	logins   *loginQueue
	// failing is set while reads fail, so that an outage is logged when
	// it starts and when it ends, not once per call.
	failing atomic.Bool
}

// Option configures a Server.
type Option func(*Server) error

// WithLogger sets the logger (default: none). The server logs failures
// with their reason, never custom data, claims or secrets.
func WithLogger(log zerolog.Logger) Option {
	return func(s *Server) error { s.log = log; return nil }
}

// WithSupabase serves Supabase Auth's custom access token hook, verified
// by v.
func WithSupabase(v *webhook.Verifier) Option {
	return func(s *Server) error {
		if v == nil {
			return errors.New("bridge: WithSupabase: nil verifier")
		}
		s.supabase = v
		return nil
	}
}

// WithGeneric serves GET /v1/users/{userId}/custom-data to callers that
// present one of tokens as a bearer token (several: rotation); see also
// WithGenericClientCerts.
func WithGeneric(tokens []string) Option {
	return func(s *Server) error {
		set, err := apikey.NewSet(tokens)
		if err != nil {
			return errors.New("bridge: WithGeneric: no token")
		}
		s.tokens = set
		return nil
	}
}

// New returns a server answering from data (an issuer.Cache, normally).
func New(data issuer.Getter, cfg Config, opts ...Option) (*Server, error) {
	if data == nil {
		return nil, errors.New("bridge: nil data source")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	s := &Server{data: data, cfg: cfg, log: zerolog.Nop(), m: newMetrics()}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	if s.supabase == nil && s.hydra == nil && !s.genericEnabled() {
		return nil, ErrNoEndpoints
	}
	if s.logins != nil && s.logins.cfg.Supabase && s.supabase == nil {
		return nil, errors.New("bridge: WithLogins for Supabase needs WithSupabase")
	}
	if s.logins != nil && s.logins.cfg.Hydra && s.hydra == nil {
		return nil, errors.New("bridge: WithLogins for Hydra needs WithHydra")
	}
	if s.logins != nil {
		s.logins.log, s.logins.m = s.log, s.m
	}
	return s, nil
}

// Collectors returns the server's Prometheus collectors:
// customdata_bridge_hook_calls_total{hook,outcome},
// …_hook_duration_seconds{hook}, …_logins_total{outcome}.
func (s *Server) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.m.calls, s.m.duration, s.m.logins}
}

// Handler routes the configured endpoints (an endpoint not configured is
// not routed: 404).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	if s.supabase != nil {
		mux.HandleFunc(RouteSupabase, s.timed(hookSupabase, s.serveSupabase))
	}
	if s.hydra != nil {
		mux.HandleFunc(RouteHydra, s.timed(hookHydra, s.serveHydra))
	}
	if s.genericEnabled() {
		mux.HandleFunc(RouteGeneric, s.timed(hookGeneric, s.serveGeneric))
	}
	return mux
}

// Run publishes the queued LOGIN events until ctx ends (at once nil
// without WithLogins).
func (s *Server) Run(ctx context.Context) error {
	if s.logins == nil {
		return nil
	}
	s.logins.run(ctx)
	return nil
}

func (s *Server) timed(hook string, h func(http.ResponseWriter, *http.Request) string) http.HandlerFunc {
	obs := s.m.duration.WithLabelValues(hook)
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		outcome := h(w, r)
		obs.Observe(time.Since(start).Seconds())
		s.m.calls.WithLabelValues(hook, outcome).Inc()
	}
}

// read waits at most Config.Timeout for the user's data. A document
// refused as oversize is no error here: the Data says so.
//
// The server's WriteTimeout runs from the request's headers, so a slow
// body plus a long Timeout could use it up and turn the documented
// failure into a closed connection: the write deadline is moved past the
// wait. A writer that cannot (a test recorder) keeps its own.
func (s *Server) read(w http.ResponseWriter, r *http.Request, userID string) (issuer.Data, error) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.cfg.Timeout + answerTime))
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	d, err := s.data.Get(ctx, userID)
	switch {
	case err == nil || errors.Is(err, issuer.ErrOversize):
		if s.failing.CompareAndSwap(true, false) {
			s.log.Info().Msg("custom data readable again: hooks answer with it")
		}
		return d, nil
	case !s.failing.Swap(true):
		s.log.Warn().Err(err).Dur("timeout", s.cfg.Timeout).
			Msg("custom data unavailable: hooks answer their failure (identity servers refuse tokens) until it is readable again")
	}
	return d, err
}

// extend puts d into claims under the configured claim, replacing what
// was there (a value an earlier hook call left in a stored session), and
// reports the outcome.
func (s *Server) extend(claims map[string]json.RawMessage, d issuer.Data) string {
	name, flag := s.cfg.ClaimName, s.cfg.ClaimName+"_oversize"
	delete(claims, name)
	delete(claims, flag)
	if !d.Found() {
		return outcomeNoDocument
	}
	if d.Oversize() {
		claims[flag] = json.RawMessage("true")
	}
	if js := d.JSON(); js != nil {
		claims[name] = js
		return outcomeOK
	}
	return outcomeOversize // refused by policy: left out, flagged
}

// body reads the request body, at most Config.MaxBody bytes.
func (s *Server) body(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := encodeJSON(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"response not encoded"}`)
	}
	writeEncoded(w, status, b)
}

// encodeJSON is json.Marshal without HTML escaping: claims pass through
// as they came ("<" stays "<", not "\u003c").
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func writeEncoded(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
