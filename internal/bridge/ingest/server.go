package ingest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/bridge/apikey"
	"github.com/customdata-worker/customdata-worker/internal/bridge/webhook"
)

// Routes, as net/http ServeMux patterns.
const (
	RouteClerk              = "POST /ingest/clerk"
	RouteKratosRegistration = "POST /ingest/kratos/registration"
	RouteKratosLogin        = "POST /ingest/kratos/login"
	RouteAuth0              = "POST /ingest/auth0"
)

// Defaults of Config.
const (
	// DefaultTimeout bounds the publishing of one request's events and
	// dead letters, well inside the senders' own timeouts (Kratos's HTTP
	// client gives a web hook 30 s).
	DefaultTimeout = 5 * time.Second
	DefaultMaxBody = 1 << 20
	// DefaultMaxDeadLetters bounds the dead letters of one request: an
	// Auth0 batch of thousands of log events that cannot be mapped would
	// otherwise make as many, and take longer than Timeout to store.
	DefaultMaxDeadLetters = 100
)

// Config is what every source shares. The zero value is the defaults.
type Config struct {
	// DeadLetterStream and DeadLetterPrefix are the worker's dead-letter
	// stream and subject prefix (defaults events.DefaultDeadLetterStream,
	// events.DefaultDeadLetterPrefix): a body that cannot be mapped is
	// published on <prefix>.<reason>, expecting that stream.
	DeadLetterStream string
	DeadLetterPrefix string
	// Timeout bounds one request's publishing (default 5s); past it the
	// request is answered 503 and the sender retries.
	Timeout time.Duration
	// MaxBody bounds a request body (default 1 MiB).
	MaxBody int64
	// MaxDeadLetters bounds the dead letters of one request (default
	// 100): the elements of a batch past it that cannot be mapped are
	// gathered in one more dead letter, too_many_unmappable, which holds
	// them one per line and counts them by reason.
	MaxDeadLetters int
}

func (c *Config) setDefaults() {
	c.DeadLetterStream = cmp.Or(c.DeadLetterStream, events.DefaultDeadLetterStream)
	c.DeadLetterPrefix = cmp.Or(c.DeadLetterPrefix, events.DefaultDeadLetterPrefix)
	c.Timeout = cmp.Or(c.Timeout, DefaultTimeout)
	c.MaxBody = cmp.Or(c.MaxBody, DefaultMaxBody)
	c.MaxDeadLetters = cmp.Or(c.MaxDeadLetters, DefaultMaxDeadLetters)
}

// Validate checks the configuration (after defaults).
func (c Config) Validate() error {
	c.setDefaults()
	if c.Timeout < 0 || c.MaxBody < 0 || c.MaxDeadLetters < 0 {
		return errors.New("ingest: negative timeout, body limit or dead-letter limit")
	}
	if strings.ContainsAny(c.DeadLetterStream, ".*> \t") {
		return fmt.Errorf("ingest: dead-letter stream %q is not a stream name", c.DeadLetterStream)
	}
	return events.ValidatePrefix(c.DeadLetterPrefix)
}

// Publisher publishes auth events: an *events.Publisher, which validates
// each event as the worker would and returns once JetStream acknowledged
// it, with the event's id as Nats-Msg-Id.
type Publisher interface {
	Publish(ctx context.Context, ev events.AuthEvent) (*jetstream.PubAck, error)
}

// KratosAuth is what Kratos's web_hook auth sends: an API key in a header
// (type api_key, in: header), or basic-auth credentials (type
// basic_auth). A request passes with either that is set.
type KratosAuth struct {
	APIKey *apikey.HeaderKey
	Basic  *apikey.Basic
}

func (a KratosAuth) authorized(r *http.Request) bool {
	return (a.APIKey != nil && a.APIKey.Authorized(r.Header)) || (a.Basic != nil && a.Basic.Authorized(r))
}

// Server serves the ingest endpoints. Build it with New, serve Handler.
type Server struct {
	pub    Publisher
	js     jetstream.JetStream
	cfg    Config
	log    zerolog.Logger
	m      *metrics
	now    func() time.Time
	clerk  *webhook.Verifier
	kratos *KratosAuth
	auth0  *apikey.Set
	// failing is set while events cannot be stored, so that an outage is
	// logged when it starts and when it ends, not once per request.
	failing atomic.Bool
}

// Option configures a Server.
type Option func(*Server) error

// WithLogger sets the logger (default: none). The server logs event ids,
// delivery ids and reasons, never bodies, user data or secrets.
func WithLogger(log zerolog.Logger) Option {
	return func(s *Server) error { s.log = log; return nil }
}

// WithClerk serves POST /ingest/clerk, verified by v (the endpoint's
// signing secrets, whsec_…).
func WithClerk(v *webhook.Verifier) Option {
	return func(s *Server) error {
		if v == nil {
			return errors.New("ingest: WithClerk: nil verifier")
		}
		s.clerk = v
		return nil
	}
}

// WithKratos serves POST /ingest/kratos/registration and
// /ingest/kratos/login, authenticated by auth.
func WithKratos(auth KratosAuth) Option {
	return func(s *Server) error {
		if auth.APIKey == nil && auth.Basic == nil {
			return errors.New("ingest: WithKratos: no api_key and no basic_auth credentials")
		}
		s.kratos = &auth
		return nil
	}
}

// WithAuth0 serves POST /ingest/auth0 to requests whose Authorization
// header is exactly one of values (the log stream's Authorization Token,
// as entered in Auth0).
func WithAuth0(values apikey.Set) Option {
	return func(s *Server) error {
		if values.Len() == 0 {
			return errors.New("ingest: WithAuth0: no Authorization value")
		}
		s.auth0 = &values
		return nil
	}
}

// withClock sets the clock events without a time of their own get
// (tests).
func withClock(now func() time.Time) Option {
	return func(s *Server) error { s.now = now; return nil }
}

// New returns a server that publishes through pub and dead-letters
// through js.
func New(pub Publisher, js jetstream.JetStream, cfg Config, opts ...Option) (*Server, error) {
	if pub == nil || js == nil {
		return nil, errors.New("ingest: nil publisher or JetStream")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	s := &Server{pub: pub, js: js, cfg: cfg, log: zerolog.Nop(), m: newMetrics(), now: time.Now}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	if s.clerk == nil && s.kratos == nil && s.auth0 == nil {
		return nil, ErrNoEndpoints
	}
	return s, nil
}

// Collectors returns the server's Prometheus collectors:
// customdata_bridge_ingest_requests_total{source,outcome},
// …_ingest_events_total{source,outcome},
// …_ingest_duration_seconds{source}.
func (s *Server) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.m.requests, s.m.events, s.m.duration}
}

// Handler routes the configured sources (a source not configured is not
// routed: 404).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.Register(mux)
	return mux
}

// Register adds the configured sources' routes to mux.
func (s *Server) Register(mux *http.ServeMux) {
	if s.clerk != nil {
		mux.HandleFunc(RouteClerk, s.timed(sourceClerk, s.serveClerk))
	}
	if s.kratos != nil {
		mux.HandleFunc(RouteKratosRegistration, s.timed(sourceKratos, s.kratosHandler(events.OperationCreate)))
		mux.HandleFunc(RouteKratosLogin, s.timed(sourceKratos, s.kratosHandler(events.OperationLogin)))
	}
	if s.auth0 != nil {
		mux.HandleFunc(RouteAuth0, s.timed(sourceAuth0, s.serveAuth0))
	}
}

func (s *Server) timed(source string, h func(http.ResponseWriter, *http.Request) string) http.HandlerFunc {
	obs := s.m.duration.WithLabelValues(source)
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		outcome := h(w, r)
		obs.Observe(time.Since(start).Seconds())
		s.m.requests.WithLabelValues(source, outcome).Inc()
	}
}

// body reads the request body, at most Config.MaxBody bytes; past that
// the request is answered 413 and logged with its sizes: the sender
// keeps it as a failed delivery, and nothing of it is stored here. The
// log is a warning for a sender already authenticated (Kratos, Auth0),
// debug for one not verified yet (Clerk's signature covers the body), so
// that anyone's oversize requests cannot flood the log; every one is
// counted (outcome too_large).
func (s *Server) body(w http.ResponseWriter, r *http.Request, source string, authenticated bool) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	if err != nil {
		ev := s.log.Debug()
		if authenticated {
			ev = s.log.Warn()
		}
		var tooLarge *http.MaxBytesError
		ev = ev.Str("source", source).Int64("limit_bytes", s.cfg.MaxBody).Int64("content_length", r.ContentLength)
		if errors.As(err, &tooLarge) {
			ev.Msg("webhook body over the limit: answered 413, nothing stored (the sender keeps it as a failed delivery)")
		} else {
			ev.Err(err).Msg("webhook body unreadable: answered 413, nothing stored")
		}
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "request body too large or unreadable"})
		return nil, false
	}
	return b, true
}

// unauthorized answers a request that is not authenticated: 401, nothing
// published. Counted; logged only at debug level, so that a flood of
// forged requests cannot flood the log.
func (s *Server) unauthorized(w http.ResponseWriter, source, msg string, err error) string {
	s.log.Debug().Err(err).Str("source", source).Msg("webhook refused: not authenticated")
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": msg})
	return requestUnauthorized
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"response not encoded"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
