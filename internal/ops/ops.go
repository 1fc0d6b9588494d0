// Package ops serves the operator endpoints: liveness, readiness and
// Prometheus metrics.
package ops

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// Check is one readiness check: nil when healthy, else what is wrong.
type Check struct {
	Name  string
	Check func() error
}

// Server serves the operator endpoints:
//
//	/livez    200 while the process runs its loops
//	/readyz   200 when every check passes, 503 with the failing checks otherwise
//	/metrics  Prometheus metrics from the given gatherer
type Server struct {
	srv *http.Server
	log zerolog.Logger
}

// NewServer builds the server; Run starts it.
func NewServer(addr string, gatherer prometheus.Gatherer, log zerolog.Logger, checks ...Check) *Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		failing := map[string]string{}
		for _, c := range checks {
			if err := c.Check(); err != nil {
				failing[c.Name] = err.Error()
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if len(failing) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]any{"ready": false, "failing": failing})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ready": true})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	return &Server{
		// Bounded everywhere: a scraper or probe that stalls, or an idle
		// keep-alive, must not hold a connection (and a goroutine) forever.
		// A keep-alive between scrapes (15–60 s apart) is worth keeping:
		// IdleTimeout, which would otherwise be ReadTimeout, spans one.
		srv: &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10},
		log: log,
	}
}

// Run listens until ctx is cancelled, then shuts down gracefully.
func (o *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", o.srv.Addr)
	if err != nil {
		return err
	}
	return o.Serve(ctx, ln)
}

// Serve is Run on an existing listener.
func (o *Server) Serve(ctx context.Context, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- o.srv.Serve(ln) }()
	o.log.Info().Str("addr", ln.Addr().String()).Msg("ops endpoints listening (/livez /readyz /metrics)")
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := o.srv.Shutdown(shutdownCtx)
	if serveErr := <-errc; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return err
}
