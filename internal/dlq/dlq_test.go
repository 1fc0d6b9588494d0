package dlq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/dlq"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/triggers"
	"github.com/customdata-worker/customdata-worker/worker/authsync"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

// env is a real auth consumer (in-process nats-server, MongoDB or the
// stand-in) whose settings a test can change between runs.
type env struct {
	t    *testing.T
	js   jetstream.JetStream
	coll *mongo.Collection
	q    *dlq.Queue
}

func newEnv(t *testing.T) *env {
	ns := testsupport.StartNATS(t)
	_, js := ns.Connect(t)
	client := testsupport.MongoDB(t).Client(t)
	coll := client.Database(testsupport.DatabaseName(t)).Collection("custom_user_data")
	q, err := dlq.New(js, authsync.DefaultDeadLetterStream, authsync.DefaultDeadLetterPrefix)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, js: js, coll: coll, q: q}
}

// runConsumer runs the worker's auth consumer with maxClockSkew until the
// returned func stops it.
func (e *env) runConsumer(maxClockSkew time.Duration) (stop func()) {
	t := e.t
	t.Helper()
	set, err := triggers.NewSet(triggers.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := testsupport.Context(t)
	if err := customdata.EnsureUserIndex(ctx, e.coll, customdata.Config{}, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	c, err := authsync.New(e.js, e.coll, set, authsync.Config{MaxClockSkew: maxClockSkew, BatchWait: 20 * time.Millisecond}, authsync.WithData(customdata.Config{Database: e.coll.Database().Name()}), authsync.WithLogger(zerolog.New(zerolog.NewTestWriter(t))))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := c.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("consumer: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

func (e *env) publish(ev events.AuthEvent) {
	e.t.Helper()
	// events.Publisher validates with the default decoder, which refuses
	// the skewed time too: publish as a producer without it would.
	data, err := json.Marshal(ev)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.js.Publish(testsupport.Context(e.t), events.AuthSubject(events.DefaultAuthPrefix, ev.OperationType), data, jetstream.WithMsgID(ev.ID)); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) waitEntries(what string, n int, f dlq.Filter) []dlq.Entry {
	e.t.Helper()
	var got []dlq.Entry
	testsupport.Eventually(e.t, what, func() bool {
		var err error
		got, err = e.q.List(testsupport.Context(e.t), f, 0)
		if err != nil {
			e.t.Fatal(err)
		}
		return len(got) == n
	})
	return got
}

func (e *env) doc(user string) bson.M {
	var m bson.M
	if err := e.coll.FindOne(testsupport.Context(e.t), bson.D{{Key: "userId", Value: user}}).Decode(&m); err != nil {
		return nil
	}
	return m
}

// An auth service whose clock runs ten minutes ahead signs users up: the
// worker (5 minutes of skew allowed) dead-letters the CREATE as
// invalid_time. Redriving it before the fix dead-letters it again, with
// the redrive counted; once the worker allows 15 minutes of skew, the
// second redrive applies and the dead letter is gone.
func TestRedriveAfterTheCauseIsFixedApplies(t *testing.T) {
	e := newEnv(t)
	ctx := testsupport.Context(t)
	stop := e.runConsumer(0)

	ahead := events.NewAuthEvent(events.OperationCreate, "carol", "local-userpass")
	ahead.Time = time.Now().Add(10 * time.Minute).UTC()
	ok := events.NewAuthEvent(events.OperationCreate, "dave", "local-userpass")
	e.publish(ahead)
	e.publish(ok)
	testsupport.Eventually(t, "dave's document", func() bool { return e.doc("dave") != nil })

	first := e.waitEntries("carol's CREATE dead-lettered", 1, dlq.Filter{})[0]
	if first.Reason != string(events.ReasonInvalidTime) || first.UserID != "carol" || first.RedriveCount != 0 ||
		first.OriginalSubject != "auth.events.create" || first.OriginalMsgID != ahead.ID {
		t.Fatalf("dead letter = %+v", first)
	}
	if byUser, _ := e.q.List(ctx, dlq.Filter{UserID: "dave"}, 0); len(byUser) != 0 {
		t.Fatalf("user filter: dave has dead letters %+v", byUser)
	}

	// Dry run: nothing moves.
	var dry []dlq.Outcome
	if err := e.q.Redrive(ctx, dlq.Filter{Reason: first.Reason}, true, func(o dlq.Outcome) { dry = append(dry, o) }); err != nil {
		t.Fatal(err)
	}
	if len(dry) != 1 || dry[0].Done || dry[0].MsgID != ahead.ID+".redrive-1" {
		t.Fatalf("dry run = %+v", dry)
	}
	if got := e.waitEntries("still one dead letter after the dry run", 1, dlq.Filter{}); got[0].Sequence != first.Sequence {
		t.Fatalf("dry run changed the stream: %+v", got)
	}

	// Redrive before the fix: dead-lettered again, count 1, same root id.
	redrive(t, e.q, dlq.Filter{Sequences: []uint64{first.Sequence}})
	again := e.waitEntries("the redriven event dead-lettered again", 1, dlq.Filter{})[0]
	if again.Sequence == first.Sequence || again.RedriveCount != 1 || again.OriginalMsgID != ahead.ID || again.Reason != first.Reason {
		t.Fatalf("second dead letter = %+v (first %+v)", again, first)
	}

	// The fix: the worker allows the auth service's skew.
	stop()
	e.runConsumer(15 * time.Minute)
	outs := redrive(t, e.q, dlq.Filter{All: true})
	if outs[0].MsgID != ahead.ID+".redrive-2" {
		t.Fatalf("second redrive published as %q", outs[0].MsgID)
	}
	testsupport.Eventually(t, "carol's document created by the redriven CREATE", func() bool { return e.doc("carol") != nil })
	time.Sleep(200 * time.Millisecond) // a re-dead-lettering would have happened by now
	if left, _ := e.q.List(ctx, dlq.Filter{}, 0); len(left) != 0 {
		t.Fatalf("dead letters left after a successful redrive: %+v", left)
	}
}

func redrive(t *testing.T, q *dlq.Queue, f dlq.Filter) []dlq.Outcome {
	t.Helper()
	var outs []dlq.Outcome
	if err := q.Redrive(testsupport.Context(t), f, false, func(o dlq.Outcome) { outs = append(outs, o) }); err != nil {
		t.Fatal(err)
	}
	if len(outs) != 1 || !outs[0].Done || outs[0].Err != nil {
		t.Fatalf("redrive outcomes = %+v", outs)
	}
	return outs
}

// Redrive and purge need a selection; a truncated dead letter is never
// redriven (its body is not the event); purge deletes only what it
// selects.
func TestRedriveRefusalsAndPurge(t *testing.T) {
	e := newEnv(t)
	ctx := testsupport.Context(t)
	e.runConsumer(0) // provisions the dead-letter stream
	pub := func(reason string, h nats.Header, body string) {
		h.Set(events.HeaderDLQReason, reason)
		if _, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: authsync.DefaultDeadLetterPrefix + "." + reason, Header: h, Data: []byte(body)}); err != nil {
			t.Fatal(err)
		}
	}
	pub("malformed_json", nats.Header{events.HeaderDLQOriginalSubject: {"auth.events.login"}, events.HeaderDLQTruncated: {"2000000"}}, `{"user":`)
	pub("malformed_json", nats.Header{}, `nope`)
	pub("invalid_user_id", nats.Header{events.HeaderDLQOriginalSubject: {"auth.events.login"}}, `{"user":{"id":"erin"}}`)

	for _, op := range []func(context.Context, dlq.Filter, bool, func(dlq.Outcome)) error{e.q.Redrive, e.q.Purge} {
		if err := op(ctx, dlq.Filter{UserID: "erin"}, false, func(dlq.Outcome) {}); !errors.Is(err, dlq.ErrNoSelection) {
			t.Fatalf("without --seq, --reason or --all: %v", err)
		}
	}
	var outs []dlq.Outcome
	if err := e.q.Redrive(ctx, dlq.Filter{Reason: "malformed_json"}, false, func(o dlq.Outcome) { outs = append(outs, o) }); err != nil {
		t.Fatal(err)
	}
	if len(outs) != 2 || !errors.Is(outs[0].Err, dlq.ErrTruncated) || !errors.Is(outs[1].Err, dlq.ErrNoOriginalSubject) {
		t.Fatalf("redrive of unredrivable dead letters = %+v", outs)
	}
	// A replay of a signed event under another id: redriving it would
	// carry the replay out.
	pub(string(events.ReasonMsgIDNotSigned), nats.Header{events.HeaderDLQOriginalSubject: {"auth.events.delete"},
		events.HeaderSignature: {"c2ln"}, events.HeaderSigner: {"UABC"}}, `{"user":{"id":"frank"}}`)
	outs = nil
	if err := e.q.Redrive(ctx, dlq.Filter{Reason: string(events.ReasonMsgIDNotSigned)}, false, func(o dlq.Outcome) { outs = append(outs, o) }); err != nil {
		t.Fatal(err)
	}
	if len(outs) != 1 || !errors.Is(outs[0].Err, dlq.ErrReplay) {
		t.Fatalf("redrive of a replay = %+v", outs)
	}
	e.waitEntries("nothing deleted by refused redrives", 4, dlq.Filter{})

	var purged []string
	if err := e.q.Purge(ctx, dlq.Filter{All: true, UserID: "erin"}, false, func(o dlq.Outcome) {
		purged = append(purged, fmt.Sprintf("%s %v", o.Entry.Reason, o.Done))
	}); err != nil {
		t.Fatal(err)
	}
	if len(purged) != 1 || purged[0] != "invalid_user_id true" {
		t.Fatalf("purged %v", purged)
	}
	left := e.waitEntries("three dead letters left", 3, dlq.Filter{})
	if _, err := e.q.Get(ctx, left[0].Sequence+100); !errors.Is(err, dlq.ErrNotFound) {
		t.Fatalf("get of a missing sequence: %v", err)
	}
}
