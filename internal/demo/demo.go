// Package demo drives a running worker the way an auth service and an
// issuer would: it publishes auth events with events.Publisher, edits the
// custom-data collection like an app would, and prints each document change
// and each invalidation notice as it arrives. `customdata-worker demo` runs
// it against a worker started in the same process.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/events"
)

// Env is what the demo needs from the running stack.
type Env struct {
	JS             jetstream.JetStream
	Collection     *mongo.Collection
	UserIDField    string
	LastLoginField string
	AuthPrefix     string
	NoticePrefix   string
	NoticeStream   string
	Out            io.Writer
	// StepTimeout bounds the wait for each effect (default 15s).
	StepTimeout time.Duration
}

type noticeLog struct {
	mu      sync.Mutex
	notices []events.Notice
	changed chan struct{}
}

func (l *noticeLog) add(n events.Notice) {
	l.mu.Lock()
	l.notices = append(l.notices, n)
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

func (l *noticeLog) since(i int) []events.Notice {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i >= len(l.notices) {
		return nil
	}
	return append([]events.Notice(nil), l.notices[i:]...)
}

func (l *noticeLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.notices)
}

// Run plays the scenario once and returns an error naming the first effect
// that did not happen.
func Run(ctx context.Context, env Env) error {
	if env.StepTimeout == 0 {
		env.StepTimeout = 15 * time.Second
	}
	// Notices print from the consumer's goroutine while steps print from
	// this one.
	out := &lockedWriter{w: env.Out}
	pub, err := events.NewPublisher(env.JS, events.WithSubjectPrefix(env.AuthPrefix))
	if err != nil {
		return err
	}

	log := &noticeLog{changed: make(chan struct{}, 1)}
	stream, err := waitForStream(ctx, env.JS, env.NoticeStream, env.StepTimeout)
	if err != nil {
		return err
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{env.NoticePrefix + ".>"}})
	if err != nil {
		return fmt.Errorf("demo: subscribe to notices: %w", err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if m.Subject() == events.HeartbeatSubject(env.NoticePrefix) {
			return // the leader's liveness, no change
		}
		n, err := events.DecodeNotice(m.Data())
		if err != nil {
			fmt.Fprintf(out, "  ✗ undecodable notice on %s: %v\n", m.Subject(), err)
			return
		}
		fmt.Fprintf(out, "  ⇠ notice on %s: %s\n", m.Subject(), describe(n))
		log.add(n)
	})
	if err != nil {
		return fmt.Errorf("demo: consume notices: %w", err)
	}
	defer cc.Stop()

	// A worker with no checkpoint yet (always so on the demo's fresh NATS)
	// starts by telling issuers to drop everything.
	fmt.Fprintln(out, "\n0. Worker starts watching the collection")
	waitNotice(ctx, out, log, 0, env.StepTimeout)

	user := "ada.lovelace+" + events.NewEventID()[:6] + "@example.com"
	filter := bson.D{{Key: env.UserIDField, Value: user}}
	fmt.Fprintf(out, "\nDemo user: %q (notice subject %s)\n", user, events.UserNoticeSubject(env.NoticePrefix, user))

	// 1. CREATE → the trigger creates the user's document.
	fmt.Fprintln(out, "\n1. Auth service publishes CREATE")
	mark := log.len()
	create := events.NewAuthEvent(events.OperationCreate, user, "local-userpass")
	if _, err := pub.Publish(ctx, create); err != nil {
		return fmt.Errorf("demo: publish CREATE: %w", err)
	}
	doc, err := waitForDoc(ctx, env.Collection, filter, env.StepTimeout, func(d bson.M) bool { return d != nil })
	if err != nil {
		return fmt.Errorf("demo: CREATE did not create the document: %w", err)
	}
	fmt.Fprintf(out, "  ✓ document created: %s\n", show(doc))
	waitNotice(ctx, out, log, mark, env.StepTimeout)

	// 2. LOGIN → lastLogin moves to the event time.
	fmt.Fprintln(out, "\n2. Auth service publishes LOGIN")
	mark = log.len()
	login := events.NewAuthEvent(events.OperationLogin, user, "local-userpass")
	if _, err := pub.Publish(ctx, login); err != nil {
		return fmt.Errorf("demo: publish LOGIN: %w", err)
	}
	want := login.Time.Truncate(time.Millisecond)
	doc, err = waitForDoc(ctx, env.Collection, filter, env.StepTimeout, func(d bson.M) bool {
		t, ok := d[env.LastLoginField].(bson.DateTime)
		return ok && !t.Time().Before(want)
	})
	if err != nil {
		return fmt.Errorf("demo: LOGIN did not set %s: %w", env.LastLoginField, err)
	}
	fmt.Fprintf(out, "  ✓ %s = %s\n", env.LastLoginField, doc[env.LastLoginField].(bson.DateTime).Time().UTC().Format(time.RFC3339Nano))
	waitNotice(ctx, out, log, mark, env.StepTimeout)

	// 3. The app edits the document directly: issuers must hear of it.
	fmt.Fprintln(out, "\n3. The app changes the user's plan directly in MongoDB (not through the worker)")
	mark = log.len()
	if _, err := env.Collection.UpdateOne(ctx, filter, bson.D{{Key: "$set", Value: bson.D{{Key: "plan", Value: "pro"}}}}); err != nil {
		return fmt.Errorf("demo: outside edit: %w", err)
	}
	fmt.Fprintln(out, "  ✓ plan = \"pro\"")
	waitNotice(ctx, out, log, mark, env.StepTimeout)

	// 4. DELETE → the trigger removes the document.
	fmt.Fprintln(out, "\n4. Auth service publishes DELETE")
	mark = log.len()
	del := events.NewAuthEvent(events.OperationDelete, user, "local-userpass")
	if _, err := pub.Publish(ctx, del); err != nil {
		return fmt.Errorf("demo: publish DELETE: %w", err)
	}
	if _, err := waitForDoc(ctx, env.Collection, filter, env.StepTimeout, func(d bson.M) bool { return d == nil }); err != nil {
		return fmt.Errorf("demo: DELETE did not remove the document: %w", err)
	}
	fmt.Fprintln(out, "  ✓ document removed")
	waitNotice(ctx, out, log, mark, env.StepTimeout)

	fmt.Fprintf(out, "\nDone: %d notices received.\n", log.len())
	return nil
}

func waitForStream(ctx context.Context, js jetstream.JetStream, name string, timeout time.Duration) (jetstream.Stream, error) {
	deadline := time.Now().Add(timeout)
	for {
		s, err := js.Stream(ctx, name)
		if err == nil {
			return s, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("demo: notice stream %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitNotice prints whether a notice arrived after mark. A missing notice
// is reported, not fatal: the document effects are what the demo proves,
// and notices are shown as they come.
func waitNotice(ctx context.Context, out io.Writer, log *noticeLog, mark int, timeout time.Duration) {
	deadline := time.After(timeout)
	for len(log.since(mark)) == 0 {
		select {
		case <-log.changed:
		case <-deadline:
			fmt.Fprintln(out, "  ✗ no notice arrived")
			return
		case <-ctx.Done():
			return
		}
	}
	// Give same-change notices a moment to print together.
	time.Sleep(100 * time.Millisecond)
}

func waitForDoc(ctx context.Context, coll *mongo.Collection, filter bson.D, timeout time.Duration, done func(bson.M) bool) (bson.M, error) {
	deadline := time.Now().Add(timeout)
	for {
		var doc bson.M
		err := coll.FindOne(ctx, filter).Decode(&doc)
		if errors.Is(err, mongo.ErrNoDocuments) {
			doc, err = nil, nil
		}
		if err == nil && done(doc) {
			return doc, nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("timed out")
			}
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func show(doc bson.M) string {
	delete(doc, "_id")
	b, err := bson.MarshalExtJSON(doc, false, false)
	if err != nil {
		return fmt.Sprint(doc)
	}
	return string(b)
}

func describe(n events.Notice) string {
	b, _ := json.Marshal(struct {
		Kind       events.NoticeKind  `json:"kind"`
		UserID     string             `json:"userId,omitempty"`
		DocumentID string             `json:"documentId,omitempty"`
		Operation  string             `json:"operation,omitempty"`
		Changed    []string           `json:"changedFields,omitempty"`
		Reason     events.FlushReason `json:"reason,omitempty"`
	}{n.Kind, n.UserID, n.DocumentID, n.Operation, n.ChangedFields, n.Reason})
	return string(b)
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
