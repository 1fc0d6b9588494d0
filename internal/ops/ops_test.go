package ops

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

func TestOpsServerReportsReadinessAndMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "customdata_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Inc()
	var mongoDown atomic.Bool
	srv := NewServer("", reg, zerolog.Nop(), Check{Name: "mongodb", Check: func() error {
		if mongoDown.Load() {
			return errors.New("mongodb unreachable")
		}
		return nil
	}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if code, _ := get("/livez"); code != http.StatusOK {
		t.Errorf("/livez = %d, want 200", code)
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz healthy = %d %s, want 200", code, body)
	}
	mongoDown.Store(true)
	code, body := get("/readyz")
	if code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with mongo down = %d, want 503", code)
	}
	var parsed struct {
		Failing map[string]string `json:"failing"`
	}
	if err := json.Unmarshal([]byte(body), &parsed); err != nil || parsed.Failing["mongodb"] == "" {
		t.Errorf("/readyz body %q does not name the failing check", body)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "customdata_test_total 1") {
		t.Errorf("/metrics = %d, body lacks the registered counter", code)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve returned %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not stop after cancel")
	}
}
