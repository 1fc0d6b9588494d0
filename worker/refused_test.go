package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/internal/natsconn"
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
