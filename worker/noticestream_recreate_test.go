package worker_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/worker"
)

// TestNoticeStreamDeletedUnderALeaderIsProvisionedAgain: someone deletes
// the notice stream alone while the leader's term runs (the lease and
// checkpoint buckets live on, so no new term starts). The leader's
// publishes fail; it must provision the stream again and republish from
// its checkpoint, so a change made meanwhile reaches issuers, instead of
// retrying into nothing until the term ends.
func TestNoticeStreamDeletedUnderALeaderIsProvisionedAgain(t *testing.T) {
	m := testsupport.MongoDB(t)
	srv := testsupport.StartNATS(t)
	w, cfg, logs := newWorker(t, m.URI, func(c *worker.Config) {
		c.NATS.URL = srv.URL
		c.Notify.HeartbeatInterval = time.Minute // the publish path alone must notice
	})
	coll := m.Client(t).Database(cfg.Data.Database).Collection(cfg.Data.Collection)
	if _, err := coll.InsertOne(testsupport.Context(t), bson.D{{Key: "userId", Value: "ada"}}); err != nil {
		t.Fatal(err)
	}
	runWorker(t, w)
	_, js := srv.Connect(t)
	defer func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	waitForLeader(t, w)
	readNotices(t, js, events.DefaultNoticePrefix, events.FlushAllSubject(events.DefaultNoticePrefix))

	if err := js.DeleteStream(testsupport.Context(t), events.DefaultNoticeStream); err != nil {
		t.Fatal(err)
	}
	// A change while the stream is gone: its notice cannot be stored, and
	// must not be lost.
	if _, err := coll.UpdateOne(testsupport.Context(t), bson.D{{Key: "userId", Value: "ada"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "plan", Value: "team"}}}}); err != nil {
		t.Fatal(err)
	}
	// The new stream covers it: by ada's notice (republished from the
	// checkpoint), or by a flush-all when the term had no checkpoint yet
	// and reopened from now.
	ada := events.UserNoticeSubject(events.DefaultNoticePrefix, "ada")
	flush := events.FlushAllSubject(events.DefaultNoticePrefix)
	testsupport.Eventually(t, "the new notice stream covers the change", func() bool {
		subjects, err := noticeSubjects(js, events.DefaultNoticePrefix)
		return err == nil && (slices.Contains(subjects, ada) || slices.Contains(subjects, flush))
	})
	if logs.Count("the notifier's JetStream resources are gone") == 0 {
		t.Errorf("no log line says the notice stream was provisioned again")
	}
	// Later changes are announced as before.
	if _, err := coll.UpdateOne(testsupport.Context(t), bson.D{{Key: "userId", Value: "ada"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "plan", Value: "pro"}}}}); err != nil {
		t.Fatal(err)
	}
	readNotices(t, js, events.DefaultNoticePrefix, ada)
}

// TestNoticeStreamDeletedUnderAnIdleLeaderIsProvisionedAgain: with no
// change to announce, the failing heartbeat is what notices the loss.
func TestNoticeStreamDeletedUnderAnIdleLeaderIsProvisionedAgain(t *testing.T) {
	m := testsupport.MongoDB(t)
	srv := testsupport.StartNATS(t)
	w, _, _ := newWorker(t, m.URI, func(c *worker.Config) {
		c.NATS.URL = srv.URL
		c.Notify.HeartbeatInterval = 200 * time.Millisecond
	})
	runWorker(t, w)
	_, js := srv.Connect(t)
	waitForLeader(t, w)
	if err := js.DeleteStream(testsupport.Context(t), events.DefaultNoticeStream); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, "the notice stream exists again, heartbeats on it", func() bool {
		s, err := js.Stream(testsupport.Context(t), events.DefaultNoticeStream)
		if err != nil {
			return false
		}
		_, err = s.GetLastMsgForSubject(testsupport.Context(t), events.HeartbeatSubject(events.DefaultNoticePrefix))
		return err == nil
	})
}

// noticeSubjects returns the subjects on the notice stream, oldest first,
// heartbeats left out.
func noticeSubjects(js jetstream.JetStream, prefix string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, events.DefaultNoticeStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	batch, err := cons.FetchNoWait(1000)
	if err != nil {
		return nil, err
	}
	var subjects []string
	for msg := range batch.Messages() {
		if msg.Subject() != events.HeartbeatSubject(prefix) {
			subjects = append(subjects, msg.Subject())
		}
	}
	return subjects, nil
}

// TestVerifyModeSaysOnReadyzThatTheNoticeStreamIsGone: in verify mode an
// idle leader whose notice stream was deleted creates nothing and says so
// on /readyz (its heartbeat found it), though every poll of its change
// stream is answered.
func TestVerifyModeSaysOnReadyzThatTheNoticeStreamIsGone(t *testing.T) {
	m := testsupport.MongoDB(t)
	srv := testsupport.StartNATS(t)
	short := func(c *worker.Config) {
		c.NATS.URL = srv.URL
		c.Notify.HeartbeatInterval = 200 * time.Millisecond
	}
	provisioner, cfg, _ := newWorker(t, m.URI, short)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- provisioner.Run(ctx) }()
	waitForLeader(t, provisioner)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("provisioning run: %v", err)
	}
	w, _, _ := newWorker(t, m.URI, func(c *worker.Config) {
		short(c)
		c.Data = cfg.Data
		c.Streams.Mode = worker.ProvisionVerify
	})
	runWorker(t, w)
	_, js := srv.Connect(t)
	waitForLeader(t, w)
	if err := js.DeleteStream(testsupport.Context(t), events.DefaultNoticeStream); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, "/readyz says the notice stream is gone", func() bool {
		for _, c := range w.Checks() {
			if c.Name == "notifier" {
				err := c.Check()
				return err != nil && strings.Contains(err.Error(), "stream "+events.DefaultNoticeStream) &&
					strings.Contains(err.Error(), "PROVISION=verify creates nothing")
			}
		}
		return false
	})
	if _, err := js.Stream(testsupport.Context(t), events.DefaultNoticeStream); err == nil {
		t.Fatal("verify mode created the notice stream")
	}
}

// runWorker runs w until the test ends, then stops it and fails the test
// if Run returned an error.
func runWorker(t *testing.T, w *worker.Worker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}
