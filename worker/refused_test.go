package worker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/internal/natsconn"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/triggers"
	"github.com/customdata-worker/customdata-worker/worker"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

// A NATS server refusing the worker's password ends Run at once with the
// refusal (not retried as an outage), and the password is not in it.
func TestRunStopsWhenNATSRefusesTheCredentials(t *testing.T) {
	const password = "Wr0ngPassw0rd-9"
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, Username: "worker", Password: "right-one"})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	set, err := triggers.NewSet(triggers.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(worker.Config{
		MongoURI: "mongodb://127.0.0.1:1/", // never reached: NATS comes first
		NATS:     worker.NATSConfig{URL: s.ClientURL(), User: "worker", Password: password},
		Data:     customdata.Config{Database: "d", Collection: "c"},
		Triggers: set,
	}, worker.WithLogger(zerolog.Nop()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a retried refusal would end only here
	defer cancel()
	err = w.Run(ctx)
	if err == nil || ctx.Err() != nil || !natsconn.Refused(err) || !strings.Contains(err.Error(), "Authorization Violation") {
		t.Fatalf("Run = %v, want the refusal at once", err)
	}
	if strings.Contains(err.Error(), password) {
		t.Fatalf("the password is shown: %v", err)
	}
}

// The server refuses the password after the worker connected (rotated,
// then the configuration reloaded): the client stops reconnecting, and
// Run ends with the refusal instead of a bare "connection closed", so the
// process exits and its restart fails fast; neither password is shown.
func TestRunStopsWhenNATSRefusesTheCredentialsLater(t *testing.T) {
	const before, after = "F1rstPassw0rd-9", "Sec0ndPassw0rd-9"
	n := testsupport.StartNATSWithPassword(t, "worker", before)
	set, err := triggers.NewSet(triggers.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	logs := &testsupport.Logs{}
	started := make(chan struct{})
	w, err := worker.New(worker.Config{
		MongoURI: testsupport.MongoDB(t).URI,
		NATS:     worker.NATSConfig{URL: n.URL, User: "worker", Password: before},
		Data:     customdata.Config{Database: testsupport.DatabaseName(t), Collection: "custom_user_data"},
		Notices:  true,
		Triggers: set,
	}, worker.WithLogger(zerolog.New(logs)), worker.WithReady(func(jetstream.JetStream, *mongo.Client) { close(started) }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testsupport.Wait)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("Run = %v before it started", err)
	}
	n.SetPassword(t, after)
	err = <-done
	switch msg := err.Error(); {
	case ctx.Err() != nil:
		t.Fatalf("Run went on after the refusal (%v)", err)
	case !errors.Is(err, natsconn.ErrClosed) || !natsconn.Refused(err):
		t.Fatalf("Run = %v, want the connection closed for good by a refusal", err)
	case !strings.Contains(strings.ToLower(msg), "nats refused the credentials: nats: authorization violation"):
		t.Fatalf("Run = %v does not name the refusal", err)
	case strings.Contains(msg, before) || strings.Contains(msg, after) ||
		strings.Contains(logs.String(), before) || strings.Contains(logs.String(), after):
		t.Fatalf("a password is shown: %v", err)
	case strings.Contains(logs.String(), "stopped cleanly"):
		t.Fatalf("the worker said it stopped cleanly before failing: %s", logs.String())
	}
}
