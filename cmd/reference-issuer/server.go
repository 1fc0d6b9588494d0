package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/redact"
	"github.com/customdata-worker/customdata-worker/issuer"
)

// refresher is the cache's forced re-read, when there is a cache.
type refresher interface {
	Refresh(ctx context.Context, userID string) (issuer.Data, error)
}

// server is the token API. It stands in for the login side of a real
// auth service: POST /login trusts the userId it is given, so it must
// never be exposed beyond a demo or test network.
type server struct {
	pub   *events.Publisher
	data  issuer.Getter
	tok   *tokens
	log   zerolog.Logger
	ready func(context.Context) error
	// following reports whether the cache follows the notices (nil: no
	// notices to follow); /readyz warns while it does not.
	following func() bool
	issued    *prometheus.CounterVec
	failed    *prometheus.CounterVec
	// force limits ?force=true per user (nil: unlimited, in tests).
	force *forceLimiter
	// refreshNeedsDoc refuses /refresh to a user without a document.
	refreshNeedsDoc bool
	// secrets are cut from error text shown on /readyz.
	secrets []string
}

// tokenResponse is the body of a successful /login or /refresh.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

const maxBody = 64 << 10

// errUserGone: /refresh for a user with no document, when that is refused.
var errUserGone = errors.New("user no longer exists: log in again")

func (s *server) routes(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /refresh", s.refresh)
	mux.HandleFunc("GET /.well-known/jwks.json", s.jwks)
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

func (s *server) login(w http.ResponseWriter, r *http.Request) {
	var req struct {
		UserID   string `json:"userId"`
		Provider string `json:"provider"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(&req)
	if err == nil {
		// One object and nothing after it.
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = errors.New("data after the JSON object")
		}
	}
	if err != nil {
		s.fail(w, "login", "bad_request", http.StatusBadRequest, "body must be {\"userId\": …, \"provider\": …}")
		return
	}
	ev := events.NewAuthEvent(events.OperationLogin, req.UserID, req.Provider)
	if _, err := s.pub.Publish(r.Context(), ev); err != nil {
		if reason := events.ReasonOf(err); reason != "" {
			s.fail(w, "login", string(reason), http.StatusBadRequest, "rejected: "+string(reason))
			return
		}
		s.log.Warn().Err(err).Str("event_id", ev.ID).Msg("LOGIN not published")
		s.fail(w, "login", "publish_failed", http.StatusServiceUnavailable, "auth event not published")
		return
	}
	s.respond(w, r, "login", verified{UserID: req.UserID, Provider: req.Provider, Session: s.tok.newSession()}, false)
}

func (s *server) refresh(w http.ResponseWriter, r *http.Request) {
	// The scheme is case-insensitive (RFC 7235 §2.1).
	scheme, raw, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		s.fail(w, "refresh", "no_token", http.StatusUnauthorized, "Authorization: Bearer <token> required")
		return
	}
	v, err := s.tok.verify(strings.TrimSpace(raw))
	switch {
	case errors.Is(err, errSessionEnded):
		s.fail(w, "refresh", "session_ended", http.StatusUnauthorized, errSessionEnded.Error())
		return
	case err != nil:
		s.fail(w, "refresh", "bad_token", http.StatusUnauthorized, errBadToken.Error())
		return
	}
	userID := v.UserID
	// ?force=true is refreshCustomData(): re-read MongoDB whatever the cache
	// holds. Without it the cache answers, kept fresh by notices. Forced
	// re-reads are limited per user, so that a client looping on it cannot
	// turn the issuer into a MongoDB load generator; past the limit the
	// cache answers, which notices keep fresh anyway.
	force := r.URL.Query().Get("force") == "true"
	if force && s.force != nil && !s.force.allow(userID) {
		s.log.Debug().Msg("forced refresh over its per-user limit: answered from the cache")
		force = false
	}
	s.respond(w, r, "refresh", v, force)
}

// dataReadTimeout bounds the custom-data read of one token request: the
// cache's default ReadTimeout.
const dataReadTimeout = 10 * time.Second

func (s *server) respond(w http.ResponseWriter, r *http.Request, endpoint string, v verified, force bool) {
	userID := v.UserID
	var d issuer.Data
	var err error
	// Bounded here as the cache bounds its reads: with the cache off the
	// read is the Source's own, and a request's context has no deadline,
	// so a MongoDB reply lost on the way would hold the handler until the
	// client gave up (the client sets no operation timeout).
	ctx, cancel := context.WithTimeout(r.Context(), dataReadTimeout)
	defer cancel()
	if rf, ok := s.data.(refresher); ok && force {
		d, err = rf.Refresh(ctx, userID)
	} else {
		d, err = s.data.Get(ctx, userID)
	}
	switch {
	case errors.Is(err, issuer.ErrOversize):
		// Refused by policy: the token goes out without custom data.
		s.log.Warn().Str("document_id", d.DocumentID()).Int("bytes", d.Size()).Msg("custom data over the size limit left out of the token")
		err = nil
	case err != nil:
		s.log.Warn().Err(err).Str("endpoint", endpoint).Msg("custom data unavailable")
		s.fail(w, endpoint, "data_unavailable", http.StatusServiceUnavailable, "custom data unavailable")
		return
	}
	if endpoint == "refresh" && s.refreshNeedsDoc && !d.Found() {
		// The worker deletes the document on the user's DELETE, and the
		// cache learns it from the notice: no renewal for a deleted user.
		s.fail(w, endpoint, "user_gone", http.StatusUnauthorized, errUserGone.Error())
		return
	}
	token, exp, err := s.tok.issue(userID, v.Provider, d, v.Session)
	if err != nil {
		s.log.Error().Err(err).Msg("token not signed")
		s.fail(w, endpoint, "sign_failed", http.StatusInternalServerError, "token not signed")
		return
	}
	s.issued.WithLabelValues(endpoint).Inc()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(tokenResponse{AccessToken: token, TokenType: "Bearer", ExpiresIn: int64(exp.Sub(s.tok.now()).Seconds())})
}

// jwksMaxAge is how long clients and proxies may cache the JWK set. A
// previous key must stay published at least a token lifetime plus this
// after it stopped signing; a new key reaches a client that does not
// refetch on an unknown kid within this.
const jwksMaxAge = 5 * time.Minute

func (s *server) jwks(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(jwksMaxAge.Seconds())))
	_ = json.NewEncoder(w).Encode(s.tok.jwks())
}

// ephemeralKeyWarning is on /readyz while the signing key was generated at
// start: the replica is ready, but its tokens verify nowhere else.
const ephemeralKeyWarning = "warning: signing with a key generated at start (" + envPrefix + "_DEV_EPHEMERAL_KEY=true): " +
	"tokens of other replicas and of earlier runs do not verify here, nor these elsewhere; development only\n"

// notFollowingWarning is on /readyz while the cache does not follow the
// notices (no notifier leads, the notice stream is missing or NATS is
// away): still ready while MongoDB answers, since every token then reads
// it, which is correct but loads MongoDB.
const notFollowingWarning = "warning: notices are not followed: the cache reads through (every token reads MongoDB)\n"

// readyz answers 200 "ok" or 503 with what is not ready, secrets cut from
// the error text (drivers quote hosts and URIs).
func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	var body strings.Builder
	status := http.StatusOK
	if err := s.ready(ctx); err != nil {
		status = http.StatusServiceUnavailable
		body.WriteString("not ready: " + redact.Err(err, s.secrets...).Error() + "\n")
	} else {
		body.WriteString("ok\n")
	}
	if s.following != nil && !s.following() {
		body.WriteString(notFollowingWarning)
	}
	if s.tok.keys.ephemeral {
		body.WriteString(ephemeralKeyWarning)
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body.String()))
}

func (s *server) fail(w http.ResponseWriter, endpoint, reason string, status int, msg string) {
	s.failed.WithLabelValues(endpoint, reason).Inc()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// forceLimiter allows each user a forced re-read (?force=true) every
// `every`, with a burst, remembering at most max users: when full, users
// whose allowance is back to a full burst are forgotten, and if none is, a
// new user is refused until some are.
type forceLimiter struct {
	every time.Duration
	burst int
	max   int
	now   func() time.Time

	mu    sync.Mutex
	users map[string]*rate.Limiter
}

func newForceLimiter(every time.Duration, burst, maxUsers int) *forceLimiter {
	return &forceLimiter{every: every, burst: burst, max: maxUsers, now: time.Now, users: make(map[string]*rate.Limiter)}
}

func (l *forceLimiter) allow(userID string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	lim := l.users[userID]
	if lim == nil {
		if len(l.users) >= l.max {
			for u, x := range l.users {
				if x.TokensAt(now) >= float64(l.burst) {
					delete(l.users, u)
				}
			}
			if len(l.users) >= l.max {
				return false
			}
		}
		lim = rate.NewLimiter(rate.Every(l.every), l.burst)
		l.users[userID] = lim
	}
	return lim.AllowN(now, 1)
}
