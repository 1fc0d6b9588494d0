package authsync

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// authRestartableNATS is a JetStream server that can be stopped and
// started again on the same port with the same store, like an outage.
type authRestartableNATS struct {
	t    *testing.T
	opts *server.Options
	srv  *server.Server
}

func startAuthRestartableNATS(t *testing.T) *authRestartableNATS {
	t.Helper()
	r := &authRestartableNATS{t: t, opts: &server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	}}
	r.start()
	r.opts.Port = r.srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(r.stop)
	return r
}

func (r *authRestartableNATS) start() {
	r.t.Helper()
	s, err := server.NewServer(r.opts.Clone())
	if err != nil {
		r.t.Fatalf("nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		r.t.Fatal("nats server not ready within 10s")
	}
	r.srv = s
}

func (r *authRestartableNATS) stop() {
	if r.srv != nil {
		r.srv.Shutdown()
		r.srv.WaitForShutdown()
		r.srv = nil
	}
}

func TestAuthNATSOutageIsWaitedOut(t *testing.T) {
	ns := startAuthRestartableNATS(t)
	logs := &testsupport.Logs{}
	e := newAuthEnv(t, testsupport.MongoDB(t), func(e *authEnv) {
		nc, err := nats.Connect(ns.srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		e.nc, e.js = nc, js
		e.log = zerolog.New(zerolog.MultiLevelWriter(logs, zerolog.NewTestWriter(t)))
	})
	c, reg := e.start()
	t0 := authBaseTime()
	e.publish(e.event(events.OperationCreate, "before", t0))
	e.waitFor("document before the NATS outage", func() bool { return e.doc("before") != nil })

	ns.stop()
	e.waitFor("Healthy to report NATS down", func() bool {
		err := c.Healthy()
		return err != nil && strings.Contains(err.Error(), "NATS")
	})
	if got := testsupport.Metric(t, reg, "customdata_worker_nats_up", nil); got != 0 {
		t.Fatalf("nats_up = %v during the outage", got)
	}
	time.Sleep(time.Second) // several failed fetches: still one log line
	ns.start()

	e.waitFor("publisher reconnected", func() bool { return e.nc.IsConnected() })
	e.publish(e.event(events.OperationCreate, "after", t0))
	e.waitFor("document after the NATS outage", func() bool { return e.doc("after") != nil })
	e.waitFor("healthy again", func() bool { return c.Healthy() == nil })
	if n := logs.Count("fetching auth events fails"); n != 1 {
		t.Fatalf("outage logged %d times, want once", n)
	}
	if n := logs.Count("fetching auth events works again"); n != 1 {
		t.Fatalf("recovery logged %d times, want once", n)
	}
}
