package authsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/provision"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/triggers"
)

func TestAuthLoginSetsLastLoginAndNeverLowersIt(t *testing.T) {
	e := newAuthEnv(t, testsupport.MongoDB(t))
	_, reg := e.start()
	t0 := authBaseTime()

	e.publish(e.event(events.OperationCreate, "alice", t0))
	e.waitFor("alice's document", func() bool { return e.doc("alice") != nil })

	login := e.event(events.OperationLogin, "alice", t0.Add(10*time.Minute))
	e.publish(login)
	e.waitFor("lastLogin set", func() bool {
		d := e.doc("alice")
		return d["lastLogin"] != nil && authTimeField(t, d, "lastLogin").Equal(login.Time)
	})

	// An older login, and the same login again under a new id (a producer
	// replaying after the duplicate window), must not move it backwards.
	e.publish(e.event(events.OperationLogin, "alice", t0.Add(time.Minute)))
	replay := login
	replay.ID = events.NewEventID()
	e.publish(replay)
	e.waitSettled()
	if got := authTimeField(t, e.doc("alice"), "lastLogin"); !got.Equal(login.Time) {
		t.Fatalf("lastLogin = %s after an older login, want %s", got, login.Time)
	}
	if n := testsupport.Metric(t, reg, "customdata_worker_auth_events_total", map[string]string{"operation": "LOGIN", "outcome": "applied"}); n != 3 {
		t.Errorf("applied LOGIN events = %v, want 3", n)
	}
	// Default lastLogin has no upsert: a login of a user without a
	// document creates nothing.
	e.publish(e.event(events.OperationLogin, "nobody", t0))
	e.waitSettled()
	if d := e.doc("nobody"); d != nil {
		t.Fatalf("login of unknown user created %v", d)
	}
	if len(e.deadLetters()) != 0 {
		t.Fatal("valid events were dead-lettered")
	}
}

func TestAuthSameEventIDHasOneEffect(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	e := newAuthEnv(t, testsupport.MongoDB(t), func(e *authEnv) {
		err := e.set.Register("count", triggers.On(events.OperationLogin), triggers.HandlerFunc(func(ev events.AuthEvent) ([]triggers.Write, error) {
			mu.Lock()
			calls[ev.ID]++
			mu.Unlock()
			return []triggers.Write{{UserID: ev.User.ID, Upsert: true, Set: map[string]any{"lastEventId": ev.ID}}}, nil
		}))
		if err != nil {
			t.Fatal(err)
		}
	})
	_, reg := e.start()
	ev := e.event(events.OperationLogin, "bob", authBaseTime())
	e.publish(ev)
	e.publish(ev) // a producer retry: same id, de-duplicated by the stream
	e.waitFor("bob's document", func() bool { return e.doc("bob") != nil })
	e.waitSettled()

	mu.Lock()
	n := calls[ev.ID]
	mu.Unlock()
	if n != 1 {
		t.Fatalf("trigger ran %d times for one event id, want 1", n)
	}
	if got := e.doc("bob")["lastEventId"]; got != ev.ID {
		t.Fatalf("lastEventId = %v, want %s", got, ev.ID)
	}
	if got := testsupport.Metric(t, reg, "customdata_worker_auth_events_total", map[string]string{"operation": "LOGIN"}); got != 1 {
		t.Fatalf("LOGIN events handled = %v, want 1", got)
	}
}

func TestAuthCreateCreatesOnceAndNeverOverwrites(t *testing.T) {
	e := newAuthEnv(t, testsupport.MongoDB(t))
	e.start()
	t0 := authBaseTime()

	e.publish(e.event(events.OperationCreate, "carol", t0))
	e.waitFor("carol's document", func() bool { return e.doc("carol") != nil })
	first := e.doc("carol")
	if got := authTimeField(t, first, "createdAt"); !got.Equal(t0) {
		t.Fatalf("createdAt = %s, want %s", got, t0)
	}
	// The application edits the document; a second CREATE must not touch it.
	ctx := testsupport.Context(e.t)
	if _, err := e.coll.UpdateOne(ctx, bson.M{"userId": "carol"}, bson.M{"$set": bson.M{"plan": "pro"}}); err != nil {
		t.Fatal(err)
	}
	// A document created by another path, with other fields and no createdAt.
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "dave", "plan": "free"}); err != nil {
		t.Fatal(err)
	}
	before := e.doc("dave")

	e.publish(e.event(events.OperationCreate, "carol", t0.Add(time.Minute)))
	e.publish(e.event(events.OperationCreate, "dave", t0.Add(time.Minute)))
	e.waitSettled()

	after := e.doc("carol")
	if after["createdAt"] != first["createdAt"] || after["plan"] != "pro" || after["_id"] != first["_id"] {
		t.Fatalf("second CREATE changed carol's document: %v -> %v", first, after)
	}
	if got := e.doc("dave"); !reflect.DeepEqual(got, before) {
		t.Fatalf("CREATE changed an existing document: %v -> %v", before, got)
	}
	if n := len(e.docs("carol")); n != 1 {
		t.Fatalf("carol has %d documents, want 1", n)
	}
}

func TestAuthDeleteRemovesDocumentAndMissingIsSuccess(t *testing.T) {
	e := newAuthEnv(t, testsupport.MongoDB(t))
	_, reg := e.start()
	t0 := authBaseTime()
	e.publish(e.event(events.OperationCreate, "erin", t0))
	e.waitFor("erin's document", func() bool { return e.doc("erin") != nil })

	e.publish(e.event(events.OperationDelete, "erin", t0.Add(time.Minute)))
	e.waitFor("erin's document deleted", func() bool { return e.doc("erin") == nil })

	e.publish(e.event(events.OperationDelete, "never-existed", t0))
	e.waitSettled()
	if got := testsupport.Metric(t, reg, "customdata_worker_auth_events_total", map[string]string{"operation": "DELETE", "outcome": "applied"}); got != 2 {
		t.Fatalf("applied DELETE events = %v, want 2 (deleting a missing document succeeds)", got)
	}
	if n := len(e.deadLetters()); n != 0 {
		t.Fatalf("%d dead letters, want 0", n)
	}
}

func TestAuthProviderFilterIsRespected(t *testing.T) {
	cfg := triggers.DefaultConfig()
	cfg.LastLogin.Providers = []string{"local-userpass"}
	cfg.LastLogin.Upsert = true
	e := newAuthEnv(t, testsupport.MongoDB(t), authWithTriggers(cfg))
	_, reg := e.start()
	t0 := authBaseTime()

	google := events.NewAuthEvent(events.OperationLogin, "frank", "oauth2-google")
	google.Time = t0
	e.publish(google)
	e.waitSettled()
	if d := e.doc("frank"); d != nil {
		t.Fatalf("login via a filtered-out provider wrote %v", d)
	}
	if got := testsupport.Metric(t, reg, "customdata_worker_auth_events_total", map[string]string{"outcome": "no_writes"}); got != 1 {
		t.Fatalf("no_writes events = %v, want 1", got)
	}
	e.publish(e.event(events.OperationLogin, "frank", t0.Add(time.Minute)))
	e.waitFor("frank's lastLogin", func() bool { d := e.doc("frank"); return d != nil && d["lastLogin"] != nil })
}

func TestAuthCoalescesManyLoginsOfOneUserIntoOneWrite(t *testing.T) {
	e := newAuthEnv(t, testsupport.MongoDB(t), func(e *authEnv) { e.cfg.BatchWait = time.Second })
	c, reg := e.newConsumer()
	ctx := testsupport.Context(e.t)
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "gina"}); err != nil {
		t.Fatal(err)
	}
	t0 := authBaseTime()
	const n = 40
	var latest time.Time
	for i := range n {
		// Out of order on purpose: the result must be the maximum.
		at := t0.Add(time.Duration((i*17)%n) * time.Second)
		if at.After(latest) {
			latest = at
		}
		e.publish(e.event(events.OperationLogin, "gina", at))
	}
	e.run(c)
	e.waitSettled()

	if got := authTimeField(t, e.doc("gina"), "lastLogin"); !got.Equal(latest) {
		t.Fatalf("lastLogin = %s, want the latest %s", got, latest)
	}
	if got := testsupport.Metric(t, reg, "customdata_worker_auth_batch_messages", nil); got != 1 {
		t.Fatalf("batches = %v, want all %d logins in one batch", got, n)
	}
	if got := testsupport.Metric(t, reg, "customdata_worker_auth_write_operations_total", nil); got != 1 {
		t.Fatalf("write operations = %v, want 1 for %d logins of one user", got, n)
	}
	if got := testsupport.Metric(t, reg, "customdata_worker_auth_events_total", map[string]string{"outcome": "applied"}); got != n {
		t.Fatalf("applied = %v, want %d", got, n)
	}
}

func TestDeadLetterInvalidEvents(t *testing.T) {
	e := newAuthEnv(t, testsupport.MongoDB(t), func(e *authEnv) {
		err := e.set.Register("refuse-vip", triggers.On(events.OperationLogin), triggers.HandlerFunc(func(ev events.AuthEvent) ([]triggers.Write, error) {
			switch ev.User.ID {
			case "vip":
				return nil, fmt.Errorf("vip logins are refused: %w", triggers.ErrPermanent)
			case "flaky":
				return nil, errors.New("downstream lookup failed")
			case "boom":
				panic("handler bug")
			case "sneaky":
				return []triggers.Write{{UserID: ev.User.ID, Upsert: true, Set: map[string]any{"userId": "someone-else"}}}, nil
			}
			return nil, nil
		}))
		if err != nil {
			t.Fatal(err)
		}
	})
	e.start()
	login := func(mut func(m map[string]any)) []byte {
		m := map[string]any{
			"schemaVersion": 1, "id": events.NewEventID(), "operationType": "LOGIN",
			"providers": []string{"local-userpass"}, "user": map[string]any{"id": "mallory"},
			"time": authBaseTime().Format(time.RFC3339Nano),
		}
		mut(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	deep := "{}"
	for range events.MaxDepth + 1 {
		deep = `{"a":` + deep + `}`
	}
	loginSubject := events.AuthSubject(events.DefaultAuthPrefix, events.OperationLogin)
	cases := []struct {
		name    string
		subject string
		data    []byte
		reason  string
	}{
		{"not json", loginSubject, []byte("{not json"), "malformed_json"},
		{"not an object", loginSubject, []byte(`["LOGIN"]`), "malformed_json"},
		{"too large", loginSubject, login(func(m map[string]any) {
			m["user"] = map[string]any{"id": "mallory", "data": map[string]any{"blob": strings.Repeat("x", events.MaxEventBytes)}}
		}), "too_large"},
		{"too deep", loginSubject, login(func(m map[string]any) {
			m["user"] = map[string]any{"id": "mallory", "data": map[string]any{"deep": json.RawMessage(deep)}}
		}), "too_deep"},
		{"unknown field", loginSubject, login(func(m map[string]any) { m["extra"] = true }), "unknown_field"},
		{"operator key", loginSubject, login(func(m map[string]any) {
			m["user"] = map[string]any{"id": "mallory", "data": map[string]any{"$set": map[string]any{"admin": true}}}
		}), "forbidden_key"},
		{"schema version", loginSubject, login(func(m map[string]any) { m["schemaVersion"] = 2 }), "unsupported_schema_version"},
		{"missing user", loginSubject, login(func(m map[string]any) { m["user"] = map[string]any{} }), "missing_field"},
		{"event id", loginSubject, login(func(m map[string]any) { m["id"] = "has space" }), "invalid_event_id"},
		{"operation", loginSubject, login(func(m map[string]any) { m["operationType"] = "LOGOUT" }), "unknown_operation"},
		{"provider", loginSubject, login(func(m map[string]any) { m["providers"] = []string{"Bad Provider"} }), "invalid_provider"},
		{"user id", loginSubject, login(func(m map[string]any) { m["user"] = map[string]any{"id": "a\u0000b"} }), "invalid_user_id"},
		{"future time", loginSubject, login(func(m map[string]any) {
			m["time"] = time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		}), "invalid_time"},
		{"create on login subject", loginSubject, login(func(m map[string]any) { m["operationType"] = "CREATE" }), "subject_mismatch"},
		{"unknown subject", events.DefaultAuthPrefix + ".logout", login(func(map[string]any) {}), "subject_mismatch"},
		{"permanent trigger error", loginSubject, login(func(m map[string]any) { m["user"] = map[string]any{"id": "vip"} }), "permanent_trigger_error"},
		{"trigger writes the user-id field", loginSubject, login(func(m map[string]any) { m["user"] = map[string]any{"id": "sneaky"} }), "permanent_trigger_error"},
		{"panicking trigger", loginSubject, login(func(m map[string]any) { m["user"] = map[string]any{"id": "boom"} }), "permanent_trigger_error"},
		{"transient trigger error", loginSubject, login(func(m map[string]any) { m["user"] = map[string]any{"id": "flaky"} }), "max_deliver_exceeded"},
	}
	seqReason := map[string]string{}
	for _, tc := range cases {
		e.publishRaw(tc.subject, tc.data)
		seqReason[tc.name] = tc.reason
	}
	e.waitFor("every invalid event dead-lettered", func() bool { return len(e.deadLetters()) >= len(cases) })
	e.waitSettled()

	dls := e.deadLetters()
	if len(dls) != len(cases) {
		t.Fatalf("%d dead letters, want %d", len(dls), len(cases))
	}
	// Dead letters arrive in stream order except the retried one; match
	// them to cases by the original stream sequence.
	bySeq := map[string]*jetstream.RawStreamMsg{}
	for _, dl := range dls {
		bySeq[dl.Header.Get(events.HeaderDLQStreamSequence)] = dl
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dl := bySeq[fmt.Sprint(i+1)]
			if dl == nil {
				t.Fatalf("no dead letter for stream sequence %d", i+1)
			}
			h := dl.Header
			if got := h.Get(events.HeaderDLQReason); got != tc.reason {
				t.Fatalf("Dlq-Reason = %q, want %q (headers: %s)", got, tc.reason, authHeaderSummary(h))
			}
			if dl.Subject != DefaultDeadLetterPrefix+"."+tc.reason {
				t.Errorf("dead-letter subject = %s", dl.Subject)
			}
			if got := h.Get(events.HeaderDLQOriginalSubject); got != tc.subject {
				t.Errorf("Dlq-Original-Subject = %q, want %q", got, tc.subject)
			}
			if got := h.Get(jetstream.MsgIDHeader); got != events.DeadLetterMsgID(DefaultAuthStream, uint64(i+1), tc.data) {
				t.Errorf("Nats-Msg-Id = %q", got)
			}
			if h.Get(events.HeaderDLQError) == "" || h.Get(events.HeaderDLQDeliveryCount) == "" {
				t.Errorf("missing Dlq-Error or Dlq-Delivery-Count: %s", authHeaderSummary(h))
			}
			if string(dl.Data) != string(tc.data) {
				t.Errorf("dead letter does not carry the original data")
			}
			if tc.reason == "max_deliver_exceeded" && h.Get(events.HeaderDLQDeliveryCount) != "3" {
				t.Errorf("Dlq-Delivery-Count = %s, want 3 (MaxDeliver)", h.Get(events.HeaderDLQDeliveryCount))
			}
		})
	}
	if n := e.count(); n != 0 {
		t.Fatalf("%d documents written by invalid events, want 0", n)
	}
}

func TestDeadLetterPermanentWriteErrorFailsOnlyItsOwnMessages(t *testing.T) {
	// A rule sets a field that another unique index guards: the server
	// refuses that write every time, so its event is dead-lettered at once.
	cfg := triggers.DefaultConfig()
	cfg.Rules = []triggers.Rule{{
		Name: "team", On: []events.Operation{events.OperationLogin}, Upsert: true,
		Set: map[string]triggers.ValueSource{"team": {From: triggers.SourceConstant, Value: "red"}},
	}}
	e := newAuthEnv(t, testsupport.MongoDB(t), authWithTriggers(cfg), func(e *authEnv) { e.cfg.BatchWait = time.Second })
	ctx := testsupport.Context(e.t)
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "holder", "team": "red"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.coll.Indexes().CreateOne(ctx, mongoUniqueIndex("team")); err != nil {
		t.Fatal(err)
	}
	c, reg := e.newConsumer()
	at := authBaseTime()
	// One batch: henry's login fails for good; henry's later delete must
	// not run before that failure is settled, and runs in the same batch
	// once the login is dead-lettered (nothing of it can come back); another
	// user's event is unaffected.
	e.publish(e.event(events.OperationLogin, "henry", at))
	e.publish(e.event(events.OperationDelete, "henry", at.Add(time.Second)))
	e.publish(e.event(events.OperationCreate, "iris", at))
	e.run(c)
	e.waitFor("dead letter", func() bool { return len(e.deadLetters()) == 1 })
	e.waitSettled()

	dl := e.deadLetters()[0]
	if got := dl.Header.Get(events.HeaderDLQReason); got != events.DeadLetterWriteError {
		t.Fatalf("Dlq-Reason = %q, want %q", got, events.DeadLetterWriteError)
	}
	if got := dl.Header.Get(events.HeaderDLQStreamSequence); got != "1" {
		t.Fatalf("dead-lettered stream sequence %s, want 1 (henry's login)", got)
	}
	if got := dl.Header.Get(events.HeaderDLQError); strings.Contains(got, "red") || strings.Contains(got, "henry") {
		t.Fatalf("Dlq-Error leaks document content: %q", got)
	}
	if d := e.doc("henry"); d != nil {
		t.Fatalf("dead-lettered event wrote %v", d)
	}
	if e.doc("iris") == nil {
		t.Fatal("another user's event in the same batch was not applied")
	}
	for _, want := range []struct {
		labels map[string]string
		n      float64
	}{
		{map[string]string{"operation": "DELETE", "outcome": "retried"}, 0},
		{map[string]string{"operation": "DELETE", "outcome": "applied"}, 1},
		{map[string]string{"operation": "CREATE", "outcome": "applied"}, 1},
		{map[string]string{"operation": "LOGIN", "outcome": "dead_lettered"}, 1},
	} {
		if got := testsupport.Metric(t, reg, "customdata_worker_auth_events_total", want.labels); got != want.n {
			t.Errorf("events %v = %v, want %v", want.labels, got, want.n)
		}
	}
	if got := testsupport.Metric(t, reg, "customdata_worker_auth_dead_letters_total", map[string]string{"reason": events.DeadLetterWriteError}); got != 1 {
		t.Fatalf("dead letters metric = %v, want 1", got)
	}
}

func TestAuthMongoOutageHoldsBatchThenApplies(t *testing.T) {
	m := testsupport.PrivateMongoDB(t)
	if m.StandIn == nil {
		t.Skip("MONGODB_URI points at a server this test cannot stop; the outage is simulated with the stand-in")
	}
	e := newAuthEnv(t, m, func(e *authEnv) {
		e.cfg.AckWait = 3 * time.Second
		e.data.WriteTimeout = time.Second
	})
	c, reg := e.start()
	t0 := authBaseTime()
	e.publish(e.event(events.OperationCreate, "before", t0))
	e.waitFor("document written before the outage", func() bool { return e.doc("before") != nil })
	e.waitSettled()

	if err := m.StandIn.Stop(); err != nil {
		t.Fatal(err)
	}
	const n = 5
	for i := range n {
		e.publish(e.event(events.OperationCreate, fmt.Sprintf("during-%d", i), t0))
	}
	// Nothing is acknowledged while MongoDB is down: every event is either
	// held by the worker (delivered, unacked) or still in the stream.
	unacked := func(info *jetstream.ConsumerInfo) bool {
		return info.NumAckPending > 0 && int(info.NumPending)+info.NumAckPending == n
	}
	e.waitFor("the batch held, unacknowledged", func() bool { return unacked(e.consumerInfo()) })
	e.waitFor("Healthy to report MongoDB down", func() bool {
		err := c.Healthy()
		return errors.Is(err, ErrConsumerUnhealthy) && strings.Contains(err.Error(), "MongoDB")
	})
	// Stay down longer than AckWait: in-progress acks must keep the
	// messages from being redelivered (which would count deliveries).
	time.Sleep(4 * time.Second)
	info := e.consumerInfo()
	if !unacked(info) || info.NumRedelivered != 0 {
		t.Fatalf("during the outage: pending %d, ack pending %d, redelivered %d; want all %d unacked, none redelivered",
			info.NumPending, info.NumAckPending, info.NumRedelivered, n)
	}
	if got := testsupport.Metric(t, reg, "customdata_worker_mongo_up", nil); got != 0 {
		t.Fatalf("mongo_up = %v during the outage", got)
	}

	if err := m.StandIn.Start(); err != nil {
		t.Fatal(err)
	}
	e.waitFor("events applied after the outage", func() bool {
		// The test's own client may fail once on a connection the outage
		// cut; such an error just means "not yet".
		ctx := testsupport.Context(e.t)
		got, err := e.coll.CountDocuments(ctx, bson.M{"userId": bson.M{"$regex": "^during-"}})
		return err == nil && got == n
	})
	e.waitSettled()
	if dls := e.deadLetters(); len(dls) != 0 {
		t.Fatalf("%d events dead-lettered because of an outage", len(dls))
	}
	if got := testsupport.Metric(t, reg, "customdata_worker_auth_events_total", map[string]string{"outcome": "retried"}); got != 0 {
		t.Fatalf("%v events Nak'd because of an outage, want 0", got)
	}
	if got := testsupport.Metric(t, reg, "customdata_worker_mongo_up", nil); got != 1 {
		t.Fatalf("mongo_up = %v after the outage", got)
	}
	e.waitFor("Healthy after recovery", func() bool { return c.Healthy() == nil })
}

func TestAuthGracefulShutdownLosesNothing(t *testing.T) {
	e := newAuthEnv(t, testsupport.MongoDB(t))
	c1, _ := e.newConsumer()
	stop1 := e.run(c1)
	const n = 300
	published := make(chan int, n)
	go func() {
		defer close(published)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for i := range n {
			ev := events.NewAuthEvent(events.OperationCreate, fmt.Sprintf("user-%03d", i), "local-userpass")
			if _, err := e.pub.Publish(ctx, ev); err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
			published <- i
		}
	}()
	// Stop the first consumer while events are flowing.
	for i := range published {
		if i == n/3 {
			break
		}
	}
	stop1()
	// The batch in flight was finished, not left to AckWait: a second
	// consumer would also pick abandoned messages up, so the count below
	// cannot tell.
	if info := e.consumerInfo(); info.NumAckPending != 0 {
		t.Fatalf("the stopped consumer left %d messages unacknowledged", info.NumAckPending)
	}
	for range published {
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d of %d users created when the first consumer stopped", e.count(), n)
	c2, _ := e.newConsumer()
	e.run(c2)
	e.waitFor(fmt.Sprintf("all %d users created", n), func() bool { return e.count() == n })
	e.waitSettled()
	if dls := e.deadLetters(); len(dls) != 0 {
		t.Fatalf("%d dead letters, want 0", len(dls))
	}
}

func TestAuthVerifyModeFailsClearlyWhenStreamIsMissing(t *testing.T) {
	e := newAuthEnv(t, testsupport.MongoDB(t), func(e *authEnv) { e.streams.Mode = provision.Verify })
	c, err := New(e.js, e.coll, e.set, e.cfg, WithData(e.data), WithStreams(e.streams), WithLogger(e.log))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testsupport.Context(e.t)
	err = c.Provision(ctx)
	if !errors.Is(err, ErrNotProvisioned) {
		t.Fatalf("Provision in verify mode without streams = %v, want ErrNotProvisioned", err)
	}
	for _, want := range []string{"stream AUTH_EVENTS does not exist", "AUTH_EVENTS_DLQ", "provision mode"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := e.js.Stream(ctx, DefaultAuthStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("verify mode created the stream (or lookup failed: %v)", err)
	}
}

func TestAuthVerifyModeAcceptsProvisionedAndRejectsIncompatible(t *testing.T) {
	e := newAuthEnv(t, testsupport.MongoDB(t))
	// The operator provisions with create mode (twice: it is idempotent).
	creator, _ := e.newConsumer()
	ctx := testsupport.Context(e.t)
	if err := creator.Provision(ctx); err != nil {
		t.Fatalf("second Provision: %v", err)
	}
	verify := e.streams
	verify.Mode = provision.Verify
	verifier, err := New(e.js, e.coll, e.set, e.cfg, WithData(e.data), WithStreams(verify), WithLogger(e.log))
	if err != nil {
		t.Fatal(err)
	}
	if err := verifier.Provision(ctx); err != nil {
		t.Fatalf("verify after create: %v", err)
	}
	// The verifier consumes what it verified.
	e.run(verifier)
	e.publish(e.event(events.OperationCreate, "ivy", authBaseTime()))
	e.waitFor("ivy's document", func() bool { return e.doc("ivy") != nil })

	// A consumer that would drop messages before the worker dead-letters
	// them is refused.
	if _, err := e.js.CreateOrUpdateConsumer(ctx, DefaultAuthStream, jetstream.ConsumerConfig{
		Durable: "strict", AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: 2,
	}); err != nil {
		t.Fatal(err)
	}
	strictCfg := e.cfg
	strictCfg.Consumer = "strict"
	strict, err := New(e.js, e.coll, e.set, strictCfg, WithData(e.data), WithStreams(verify), WithLogger(e.log))
	if err != nil {
		t.Fatal(err)
	}
	err = strict.Provision(ctx)
	if !errors.Is(err, ErrIncompatibleProvisioning) || !strings.Contains(err.Error(), "max_deliver") {
		t.Fatalf("verify of an incompatible consumer = %v, want ErrIncompatibleProvisioning naming max_deliver", err)
	}
}

func TestAuthHealthyReportsNATSDownWhenFetchesFail(t *testing.T) {
	e := newAuthEnv(t, testsupport.MongoDB(t))
	creator, _ := e.newConsumer() // provisions; never runs
	verify := e.streams
	verify.Mode = provision.Verify
	c, err := New(e.js, e.coll, e.set, e.cfg, WithData(e.data), WithStreams(verify), WithLogger(e.log))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testsupport.Context(e.t)
	if err := c.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	e.run(c)
	e.waitFor("healthy", func() bool { return c.Healthy() == nil })

	// Removing the consumer behind the worker's back makes every fetch
	// fail; in verify mode the worker may not re-create it.
	if err := e.js.DeleteConsumer(ctx, DefaultAuthStream, DefaultAuthConsumer); err != nil {
		t.Fatal(err)
	}
	e.waitFor("Healthy to report NATS fetch failures", func() bool {
		err := c.Healthy()
		return errors.Is(err, ErrConsumerUnhealthy) && strings.Contains(err.Error(), "NATS") && !strings.Contains(err.Error(), "MongoDB")
	})
	// The operator restores it; the worker resumes on its own.
	if err := creator.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	e.publish(e.event(events.OperationCreate, "jack", authBaseTime()))
	e.waitFor("jack's document after the consumer is back", func() bool { return e.doc("jack") != nil })
	e.waitFor("healthy again", func() bool { return c.Healthy() == nil })
}

func TestAuthRunReturnsNilOnCancel(t *testing.T) {
	e := newAuthEnv(t, testsupport.MongoDB(t))
	c, _ := e.newConsumer()
	stop := e.run(c)
	e.waitFor("running", func() bool { return c.Healthy() == nil })
	stop()
	if err := c.Healthy(); !errors.Is(err, ErrConsumerNotRunning) {
		t.Fatalf("Healthy after Run returned = %v, want not running", err)
	}
}

func mongoUniqueIndex(field string) mongo.IndexModel {
	return mongo.IndexModel{Keys: bson.D{{Key: field, Value: 1}}, Options: options.Index().SetUnique(true)}
}
