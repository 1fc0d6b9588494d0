package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/events"
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
	pub    *events.Publisher
	data   issuer.Getter
	tok    *tokens
	log    zerolog.Logger
	ready  func(context.Context) error
	issued *prometheus.CounterVec
	failed *prometheus.CounterVec
}

// tokenResponse is the body of a successful /login or /refresh.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

const maxBody = 64 << 10

func (s *server) routes(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /refresh", s.refresh)
	mux.HandleFunc("GET /.well-known/jwks.json", s.jwks)
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if err := s.ready(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
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
	if err := dec.Decode(&req); err != nil {
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
	s.respond(w, r, "login", req.UserID, req.Provider, false)
}

func (s *server) refresh(w http.ResponseWriter, r *http.Request) {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		s.fail(w, "refresh", "no_token", http.StatusUnauthorized, "Authorization: Bearer <token> required")
		return
	}
	userID, provider, err := s.tok.verify(strings.TrimSpace(raw))
	if err != nil {
		s.fail(w, "refresh", "bad_token", http.StatusUnauthorized, errBadToken.Error())
		return
	}
	// ?force=true is refreshCustomData(): re-read MongoDB whatever the cache
	// holds. Without it the cache answers, kept fresh by notices.
	s.respond(w, r, "refresh", userID, provider, r.URL.Query().Get("force") == "true")
}

func (s *server) respond(w http.ResponseWriter, r *http.Request, endpoint, userID, provider string, force bool) {
	var d issuer.Data
	var err error
	if rf, ok := s.data.(refresher); ok && force {
		d, err = rf.Refresh(r.Context(), userID)
	} else {
		d, err = s.data.Get(r.Context(), userID)
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
	token, exp, err := s.tok.issue(userID, provider, d)
	if err != nil {
		s.log.Error().Err(err).Msg("token not signed")
		s.fail(w, endpoint, "sign_failed", http.StatusInternalServerError, "token not signed")
		return
	}
	s.issued.WithLabelValues(endpoint).Inc()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(tokenResponse{AccessToken: token, TokenType: "Bearer", ExpiresIn: int64(time.Until(exp).Seconds())})
}

func (s *server) jwks(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.tok.jwks())
}

func (s *server) fail(w http.ResponseWriter, endpoint, reason string, status int, msg string) {
	s.failed.WithLabelValues(endpoint, reason).Inc()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
