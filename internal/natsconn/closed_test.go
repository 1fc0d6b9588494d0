package natsconn_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/internal/natsconn"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// A password changed on the server (with a reload) after the client
// connected: the client stops reconnecting, and Watch says why, without
// either password.
func TestWatchNamesTheRefusalThatClosedTheConnection(t *testing.T) {
	const before, after = "F1rst-pw-9-secret", "Sec0nd-pw-9-secret"
	n := testsupport.StartNATSWithPassword(t, "app", before)
	nc, err := natsconn.Connect(natsconn.Config{URL: n.URL, User: "app", Password: before}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testsupport.Wait)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- natsconn.Watch(ctx, nc) }()
	n.SetPassword(t, after)
	err = <-done
	switch {
	case ctx.Err() != nil:
		t.Fatalf("the connection was not closed: Watch = %v", err)
	case !errors.Is(err, natsconn.ErrClosed) || !natsconn.Refused(err):
		t.Fatalf("Watch = %v, want ErrClosed and a refusal", err)
	case !strings.Contains(strings.ToLower(err.Error()), "nats refused the credentials: nats: authorization violation"):
		t.Fatalf("Watch = %v, does not name the refusal", err)
	case strings.Contains(err.Error(), before) || strings.Contains(err.Error(), after):
		t.Fatalf("Watch = %v shows a password", err)
	}
}

// Watch returns nil when its context ends, whether or not the connection
// is closed by the shutdown afterwards.
func TestWatchReturnsNilWhenStopped(t *testing.T) {
	n := testsupport.StartNATS(t)
	nc, err := natsconn.Connect(natsconn.Config{URL: n.URL}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- natsconn.Watch(ctx, nc) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Watch = %v, want nil", err)
		}
	case <-time.After(testsupport.Wait):
		t.Fatal("Watch did not return")
	}
}
