package ops

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

func TestProbeURL(t *testing.T) {
	for addr, want := range map[string]string{
		":8080":          "http://127.0.0.1:8080/readyz",
		"0.0.0.0:8080":   "http://127.0.0.1:8080/readyz",
		"[::]:8080":      "http://[::1]:8080/readyz",
		"127.0.0.1:8090": "http://127.0.0.1:8090/readyz",
		"worker:8080":    "http://worker:8080/readyz",
	} {
		if got, err := probeURL(addr, "/readyz"); err != nil || got != want {
			t.Errorf("probeURL(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
	for _, addr := range []string{"", "8080", "localhost"} {
		if _, err := probeURL(addr, "/readyz"); err == nil {
			t.Errorf("probeURL(%q) accepted", addr)
		}
	}
}

// serve runs the ops server with checks on a loopback port until the test
// ends and returns its address, as HTTP_ADDR would give it.
func serve(t *testing.T, checks ...Check) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NewServer("", prometheus.NewRegistry(), zerolog.Nop(), checks...).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ops server: %v", err)
		}
	})
	return ln.Addr().String()
}

func TestProbe(t *testing.T) {
	ctx := context.Background()
	t.Run("ready", func(t *testing.T) {
		addr := serve(t, Check{Name: "mongodb", Check: func() error { return nil }})
		line, ok := Probe(ctx, addr, "/readyz", 0)
		if want := "healthy: http://" + addr + "/readyz answered 200 OK"; !ok || line != want {
			t.Fatalf("%v %q, want %q", ok, line, want)
		}
	})
	t.Run("not ready", func(t *testing.T) {
		addr := serve(t,
			Check{Name: "startup", Check: func() error { return errors.New("waiting for MongoDB:\nserver selection error") }},
			Check{Name: "auth-consumer", Check: func() error { return errors.New("NATS down") }})
		line, ok := Probe(ctx, addr, "/readyz", 0)
		want := "unhealthy: http://" + addr + "/readyz answered 503 Service Unavailable: auth-consumer: NATS down; startup: waiting for MongoDB: server selection error"
		if ok || line != want {
			t.Fatalf("%v %q\nwant %q", ok, line, want)
		}
		// Alive all the same.
		if line, ok := Probe(ctx, addr, "/livez", 0); !ok {
			t.Fatalf("/livez: %q", line)
		}
	})
	t.Run("text answer", func(t *testing.T) {
		// The reference issuer's /readyz: "not ready: …" then a warning line.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: mongodb: server selection error\nWARNING: development key\n"))
		})}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		line, ok := Probe(ctx, ln.Addr().String(), "/readyz", 0)
		if want := "answered 503 Service Unavailable: not ready: mongodb: server selection error; WARNING: development key"; ok || !strings.HasSuffix(line, want) {
			t.Fatalf("%v %q, want it to end %q", ok, line, want)
		}
	})
	t.Run("not listening", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		line, ok := Probe(ctx, addr, "/readyz", 0)
		if want := "unhealthy: GET http://" + addr + "/readyz: dial tcp " + addr + ": connect: connection refused"; ok || line != want {
			t.Fatalf("%v %q\nwant %q", ok, line, want)
		}
	})
	t.Run("no answer", func(t *testing.T) {
		// Accepts (the kernel's backlog) and never answers.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		line, ok := Probe(ctx, ln.Addr().String(), "/readyz", 200*time.Millisecond)
		if want := "unhealthy: GET http://" + ln.Addr().String() + "/readyz: no answer within 200ms"; ok || line != want {
			t.Fatalf("%v %q\nwant %q", ok, line, want)
		}
	})
	t.Run("off", func(t *testing.T) {
		if line, ok := Probe(ctx, "", "/readyz", 0); ok || line != "unhealthy: no listen address: the ops endpoints are off" {
			t.Fatalf("%v %q", ok, line)
		}
	})
}
