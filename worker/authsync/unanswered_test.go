package authsync

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/triggers"
)

// A provisioning request whose reply never comes (lost across a
// reconnect) must fail in its own time, not at the caller's deadline,
// however far: nats.go applies its timeout only to contexts without one,
// and the worker's startup step retries Provision until it works. Here a
// plain nats-server (no JetStream) has a subscriber that swallows every
// JetStream API request.
func TestUnansweredProvisioningFailsInTime(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	if !srv.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	swallow, err := nc.Subscribe("$JS.API.>", func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = swallow.Unsubscribe() }()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	client, err := mongo.Connect(options.Client().ApplyURI("mongodb://127.0.0.1:1")) // no IO here
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	set, err := triggers.NewSet(triggers.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(js, client.Database("unanswered").Collection("customdata"), set, Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Provision(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Provision: %v, want a request timeout", err)
		}
	case <-time.After(provisionRequestTimeout + 20*time.Second):
		t.Fatal("Provision still waits for a reply that never comes")
	}
}
