// Package testsupport starts the real servers integration tests run against:
// an in-process NATS server with JetStream, and MongoDB (MONGODB_URI or the
// in-memory mongo-java-server stand-in).
package testsupport

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/internal/embeddednats"
)

// NATS is an in-process NATS server with JetStream on a temp dir.
type NATS struct {
	Server *server.Server
	URL    string
}

// StartNATS starts a server for the test and shuts it down at cleanup.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	s, err := embeddednats.Start(embeddednats.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return &NATS{Server: s, URL: s.ClientURL()}
}

// Connect returns a client connection and its JetStream context, closed at
// cleanup.
func (n *NATS) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatalf("nats connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}
