package authsync

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/triggers"
)

// A provisioning request whose reply never comes (lost across a
// reconnect) must fail in its own time, not at the caller's deadline,
// however far: nats.go applies its timeout only to contexts without one,
// and the worker's startup step retries Provision until it works. Here a
// plain nats-server (no JetStream) has a subscriber that swallows every
// JetStream API request.
func TestUnansweredProvisioningFailsInTime(t *testing.T) {
	js, _ := testsupport.UnansweredJetStream(t)
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
