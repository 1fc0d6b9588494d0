package testsupport

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PlainNATS is a connection to a nats-server without JetStream, stopped
// when the test ends: JetStream API requests find no responder unless the
// test subscribes to them.
func PlainNATS(t testing.TB) *nats.Conn {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// UnansweredJetStream is a JetStream context on a plain nats-server (no
// JetStream) where a subscriber takes every API request and answers none,
// as when replies are lost in a reconnect: requests neither fail fast (no
// responders) nor get a reply. The count is the requests taken so far.
func UnansweredJetStream(t testing.TB) (jetstream.JetStream, *atomic.Int64) {
	t.Helper()
	nc := PlainNATS(t)
	requests := &atomic.Int64{}
	if _, err := nc.Subscribe("$JS.API.>", func(*nats.Msg) { requests.Add(1) }); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js, requests
}
