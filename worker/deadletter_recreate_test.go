package worker_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/worker"
	"github.com/customdata-worker/customdata-worker/worker/authsync"
)

// TestDeadLettersOfARecreatedStreamAreKept: the auth stream is deleted
// while the worker runs and recreated by it; its sequences start at 1
// again. A bad event at a sequence an earlier dead letter came from, within
// the dead-letter stream's duplicate window, is dead-lettered too, not
// swallowed as a repeat of the first.
func TestDeadLettersOfARecreatedStreamAreKept(t *testing.T) {
	m := testsupport.MongoDB(t)
	srv := testsupport.StartNATS(t)
	w, _, logs := newWorker(t, m.URI, func(c *worker.Config) { c.NATS.URL = srv.URL })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	_, js := srv.Connect(t)
	deadLetters := func() uint64 {
		s, err := js.Stream(testsupport.Context(t), authsync.DefaultDeadLetterStream)
		if err != nil {
			return 0
		}
		info, err := s.Info(testsupport.Context(t))
		if err != nil {
			return 0
		}
		return info.State.Msgs
	}
	publishBad := func(body string) {
		t.Helper()
		testsupport.Eventually(t, "the auth stream takes "+body, func() bool {
			_, err := js.PublishMsg(testsupport.Context(t), &nats.Msg{Subject: "auth.events.login", Data: []byte(body)},
				jetstream.WithExpectStream(authsync.DefaultAuthStream))
			return err == nil
		})
	}
	waitForLeader(t, w)
	publishBad(`{"first":1}`)
	testsupport.Eventually(t, "the first bad event is dead-lettered", func() bool { return deadLetters() == 1 })

	if err := js.DeleteStream(testsupport.Context(t), authsync.DefaultAuthStream); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, "the worker recreated the auth stream", func() bool {
		return logs.Count("the auth stream or its consumer is gone") > 0 && logs.Count("auth streams and consumer provisioned") > 1
	})
	publishBad(`{"second":2}`) // sequence 1 again
	testsupport.Eventually(t, "the second bad event is dead-lettered beside the first", func() bool { return deadLetters() == 2 })
}
