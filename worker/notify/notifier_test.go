package notify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/provision"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

func TestNotifierPublishesOneNoticePerChange(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	e.start()
	r := e.readNotices()
	if first := r.next(); !isFlush(events.FlushNoCheckpoint)(first) {
		t.Fatalf("first notice = %v, want flush_all(no_checkpoint)", first)
	}
	prefix := events.DefaultNoticePrefix

	res, err := e.coll.InsertOne(ctx, bson.D{{Key: "userId", Value: "alice"}, {Key: "plan", Value: "free"}, {Key: "trial", Value: true}})
	if err != nil {
		t.Fatal(err)
	}
	id := res.InsertedID.(bson.ObjectID).Hex()
	got := r.next()
	if !isUser("alice", "insert")(got) || got.DocumentID != id || got.Subject != events.UserNoticeSubject(prefix, "alice") ||
		got.ClusterTime == nil || got.MsgID == "" {
		t.Fatalf("insert: got %v on %s (msg id %q), want a user notice for alice, document %s", got, got.Subject, got.MsgID, id)
	}

	if _, err := e.coll.UpdateOne(ctx, bson.M{"userId": "alice"},
		bson.M{"$set": bson.M{"plan": "pro", "prefs.theme": "dark"}, "$unset": bson.M{"trial": ""}}); err != nil {
		t.Fatal(err)
	}
	got = r.next()
	if e.mongo.StandIn != nil {
		// Stand-in gap: update events carry no updateDescription (and, in
		// mongo-java-server's own oplog, the update spec as documentKey:
		// the stand-in's IndexedOplog puts {_id} there, as MongoDB does).
		// The stand-in cannot evaluate
		// $bsonSize, so the notifier keeps whole documents, and with
		// updateLookup the stand-in puts the current document in
		// fullDocument (while it still exists; else the $set/$unset delta,
		// which names nobody and maps to a flush-all). The mapping takes the
		// user and the _id from that document; changed fields are unknown.
		if !isUser("alice", "update")(got) || got.DocumentID != id || got.ChangedFields != nil {
			t.Fatalf("update on the stand-in: got %v, want a user notice for alice, document %s, no changed fields", got, id)
		}
	} else if !isUser("alice", "update")(got) || got.DocumentID != id || !slices.Equal(got.ChangedFields, []string{"plan", "prefs", "trial"}) {
		t.Fatalf("update: got %v, want a user notice for alice with changed fields [plan prefs trial]", got)
	}

	if _, err := e.coll.ReplaceOne(ctx, bson.M{"userId": "alice"}, bson.M{"userId": "alice", "plan": "team"}); err != nil {
		t.Fatal(err)
	}
	got = r.next()
	if e.mongo.StandIn != nil {
		// Stand-in gap: a replaceOne is reported as an "update" (with the
		// current document as fullDocument), so the notice still names
		// alice, with the operation "update".
		if !isUser("alice", "update")(got) || got.DocumentID != id || got.ChangedFields != nil {
			t.Fatalf("replace on the stand-in: got %v, want a user notice for alice (operation update)", got)
		}
	} else {
		if !isUser("alice", "replace")(got) || got.DocumentID != id {
			t.Fatalf("replace: got %v, want a user notice for alice, operation replace", got)
		}
		// A replace may change the owner and no pre-image says who it
		// was: the document notice reaches whoever cached this _id.
		if got = r.next(); got.Subject != events.DocumentNoticeSubject(prefix, id) || got.UserID != "" || got.Operation != "replace" {
			t.Fatalf("replace: second notice %v on %s, want the document notice", got, got.Subject)
		}
	}

	if _, err := e.coll.DeleteOne(ctx, bson.M{"userId": "alice"}); err != nil {
		t.Fatal(err)
	}
	got = r.next()
	// Without pre-images a delete names only the document.
	if got.Kind != events.NoticeUser || got.UserID != "" || got.DocumentID != id || got.Operation != "delete" ||
		got.Subject != events.DocumentNoticeSubject(prefix, id) {
		t.Fatalf("delete: got %v on %s, want a document notice for %s", got, got.Subject, id)
	}
	r.quiet(500 * time.Millisecond)
}

func TestNotifierKeepsCommitOrderPerUser(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	n := e.start()
	r := e.readNotices()
	r.until("flush", isFlush(events.FlushNoCheckpoint))

	const docs = 24
	for i := range docs {
		doc := bson.D{{Key: "_id", Value: fmt.Sprintf("d-%02d", i)}, {Key: "userId", Value: fmt.Sprintf("u%d", i%4)}}
		if _, err := e.coll.InsertOne(ctx, doc); err != nil {
			t.Fatal(err)
		}
	}
	perUser := map[string][]string{}
	for range docs {
		got := r.next()
		if got.Kind != events.NoticeUser || got.Operation != "insert" {
			t.Fatalf("got %v, want insert notices only", got)
		}
		perUser[got.UserID] = append(perUser[got.UserID], got.DocumentID)
	}
	for u, ids := range perUser {
		if len(ids) != docs/4 || !slices.IsSorted(ids) {
			t.Errorf("user %s: documents notified in order %v, want %d in commit order", u, ids, docs/4)
		}
	}
	// Each user has six documents: the duplicate guard counts it.
	testsupport.Eventually(t, "duplicate users counted", func() bool { return metricValue(n.metrics.duplicateUser) > 0 })
}

func TestNotifierRestartLosesNoChange(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	insert := func(user string) {
		t.Helper()
		if _, err := e.coll.InsertOne(ctx, bson.M{"userId": user}); err != nil {
			t.Fatal(err)
		}
	}
	n1 := e.start()
	r := e.readNotices()
	r.until("flush", isFlush(events.FlushNoCheckpoint))
	insert("a")
	r.until("a", isUser("a", "insert"))
	n1.stop(false)

	// Changes while no notifier runs are published after the restart,
	// from the checkpoint, without a flush.
	insert("b")
	insert("c")
	n2 := e.start()
	got := r.until("c", isUser("c", "insert"))
	assertNoFlush(t, got)
	if !slices.ContainsFunc(got, isUser("b", "insert")) {
		t.Fatalf("after restart: got %v, want b before c", got)
	}

	// A crash (no lease release, no goodbye) between changes.
	insert("d")
	r.until("d", isUser("d", "insert"))
	n2.stop(true)
	insert("e")
	insert("f")
	e.start()
	got = r.until("f", isUser("f", "insert"))
	assertNoFlush(t, got)
	if !slices.ContainsFunc(got, isUser("e", "insert")) {
		t.Fatalf("after crash: got %v, want e before f", got)
	}
}

func assertNoFlush(t *testing.T, got []receivedNotice) {
	t.Helper()
	for _, n := range got {
		if n.Kind == events.NoticeFlushAll {
			t.Fatalf("unexpected flush-all %v in %v", n, got)
		}
	}
}

func TestNotifierFlushesFirstWithoutCheckpoint(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	// A change before the notifier ever ran is covered by the flush.
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "early"}); err != nil {
		t.Fatal(err)
	}
	n := e.start()
	r := e.readNotices()
	if first := r.next(); !isFlush(events.FlushNoCheckpoint)(first) || first.Subject != events.FlushAllSubject(events.DefaultNoticePrefix) {
		t.Fatalf("first notice = %v on %s, want flush_all(no_checkpoint) on the flush-all subject", first, first.Subject)
	}
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "late"}); err != nil {
		t.Fatal(err)
	}
	if got := r.next(); !isUser("late", "insert")(got) {
		t.Fatalf("got %v, want the insert of late", got)
	}
	if v := metricValue(n.metrics.flushes.WithLabelValues(string(events.FlushNoCheckpoint))); v != 1 {
		t.Errorf("flush metric = %v, want 1", v) // counted before the next change is read
	}
}

func TestNotifierCorruptCheckpoint(t *testing.T) {
	for _, tc := range []struct {
		name  string
		value func(ns string) []byte
		want  []events.FlushReason
	}{
		{"garbage", func(string) []byte { return []byte("not a checkpoint") }, []events.FlushReason{events.FlushBadCheckpoint}},
		{"other collection", func(string) []byte {
			return []byte(`{"v":1,"token":"EQAAAAJfZGF0YQACAAAAMAAA","ns":"other.coll"}`)
		}, []events.FlushReason{events.FlushBadCheckpoint}},
		{"token the server refuses", func(ns string) []byte {
			tok, _ := bson.Marshal(bson.M{"_data": "zz-not-a-resume-token"})
			cp := fmt.Sprintf(`{"v":1,"token":%q,"ns":%q}`, bsonBase64(tok), ns)
			return []byte(cp)
		}, []events.FlushReason{events.FlushBadCheckpoint, events.FlushHistoryLost, events.FlushPositionUnreadable}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newNotifierEnv(t)
			ctx := testsupport.Context(t)
			e.provision()
			kv, err := e.js.KeyValue(ctx, DefaultNotifierCheckpointKV)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := kv.Put(ctx, kvKeyForNamespace(e.data.Database, e.data.Collection), tc.value(e.data.Database+"."+e.data.Collection)); err != nil {
				t.Fatal(err)
			}
			e.start()
			r := e.readNotices()
			first := r.next()
			if first.Kind != events.NoticeFlushAll || !slices.Contains(tc.want, first.Reason) {
				t.Fatalf("first notice = %v, want a flush-all with reason in %v", first, tc.want)
			}
			// The stand-in refuses a malformed token with code 0 ("Unknown
			// error"): retried, then position_unreadable.
			if want := tc.want[len(tc.want)-1]; e.mongo.StandIn != nil && first.Reason != want {
				t.Fatalf("stand-in: reason %s, want %s", first.Reason, want)
			}
			if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "live"}); err != nil {
				t.Fatal(err)
			}
			if got := r.next(); !isUser("live", "insert")(got) {
				t.Fatalf("got %v, want the live insert", got)
			}
		})
	}
}

func TestNotifierLeaseFailover(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	insert := func(user string) {
		t.Helper()
		if _, err := e.coll.InsertOne(ctx, bson.M{"userId": user}); err != nil {
			t.Fatal(err)
		}
	}
	a := e.start(func(c *Config) { c.InstanceID = "a" })
	r := e.readNotices()
	r.until("flush", isFlush(events.FlushNoCheckpoint))
	testsupport.Eventually(t, "a leads", a.IsLeader)
	b := e.start(func(c *Config) { c.InstanceID = "b" })

	insert("x1")
	r.until("x1", isUser("x1", "insert"))
	// Several renewals later b still stands by and has published nothing.
	time.Sleep(e.cfg.LeaseTTL)
	if b.IsLeader() || !a.IsLeader() {
		t.Fatalf("a leads: %v, b leads: %v; want only a", a.IsLeader(), b.IsLeader())
	}
	if p := b.published(); p != 0 {
		t.Fatalf("standby published %v notices", p)
	}
	if err := b.Healthy(); err != nil {
		t.Fatalf("standby unhealthy: %v", err)
	}

	// a dies without releasing; changes keep coming.
	a.stop(true)
	insert("x2")
	insert("x3")
	testsupport.Eventually(t, "b takes over", b.IsLeader)
	got := r.until("x3", isUser("x3", "insert"))
	assertNoFlush(t, got)
	if !slices.ContainsFunc(got, isUser("x2", "insert")) {
		t.Fatalf("after failover: got %v, want x2 before x3", got)
	}
	// Counted when b's connection gets the acknowledgement, which may be
	// after an issuer already sees the notice.
	testsupport.Eventually(t, "b counts what it published", func() bool { return b.published() > 0 })
}

func TestNotifierStopsWhenTheLeaseIsLost(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	a := e.start()
	r := e.readNotices()
	r.until("flush", isFlush(events.FlushNoCheckpoint))
	testsupport.Eventually(t, "a leads", a.IsLeader)
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "x"}); err != nil {
		t.Fatal(err)
	}
	x := r.until("x", isUser("x", "insert"))
	e.waitCheckpoint(x[len(x)-1].ClusterTime)

	// Someone else writes the lease (as a replica would after a's value
	// expired): a's next revision-checked renewal fails and it must stop
	// at once.
	kv, err := e.js.KeyValue(ctx, DefaultNotifierLeaseKV)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, kvKeyForNamespace(e.data.Database, e.data.Collection), []byte(`{"instance":"thief","session":"x"}`)); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, "a stops leading", func() bool { return !a.IsLeader() })
	before := a.published()
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "y"}); err != nil {
		t.Fatal(err)
	}
	// The thief's value expires after the TTL; a takes over again and
	// publishes the change from its checkpoint.
	r.until("y", isUser("y", "insert"))
	testsupport.Eventually(t, "a leads and published again", func() bool { return a.IsLeader() && a.published() > before })
}

func TestNotifierDroppedCollectionRecovers(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	e.start()
	r := e.readNotices()
	r.until("flush", isFlush(events.FlushNoCheckpoint))
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "before"}); err != nil {
		t.Fatal(err)
	}
	r.until("before", isUser("before", "insert"))
	if err := e.coll.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	got := r.next()
	if !isFlush(events.FlushCollectionGone)(got) || got.Operation != "drop" {
		t.Fatalf("after drop: got %v, want flush_all(collection_dropped_or_renamed, drop)", got)
	}
	// The collection comes back with the next insert.
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "after"}); err != nil {
		t.Fatal(err)
	}
	got2 := r.until("after", isUser("after", "insert"))
	for _, n := range got2[:len(got2)-1] {
		// Real MongoDB follows the drop with an invalidate, whose flush
		// the drop's flush already covers.
		if n.Kind != events.NoticeFlushAll {
			t.Fatalf("unexpected notice %v before the insert", n)
		}
	}
}

func TestNotifierFlagsOversizeDocuments(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	n := e.start(func(c *Config) { c.OversizeBytes = 100 })
	r := e.readNotices()
	r.until("flush", isFlush(events.FlushNoCheckpoint))
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "small"}); err != nil {
		t.Fatal(err)
	}
	if got := r.next(); !isUser("small", "insert")(got) || got.Oversize {
		t.Fatalf("got %v, want a notice for small, not oversize", got)
	}
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "big", "blob": strings.Repeat("x", 500)}); err != nil {
		t.Fatal(err)
	}
	if got := r.next(); !isUser("big", "insert")(got) || !got.Oversize {
		t.Fatalf("got %v, want an oversize notice for big", got)
	}
	testsupport.Eventually(t, "oversize counted", func() bool { return metricValue(n.metrics.oversize) == 1 })
}

func TestNotifierPreAndPostImages(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "seed"}); err != nil { // collMod needs the collection
		t.Fatal(err)
	}
	e.start(func(c *Config) { c.PreAndPostImages = true })
	r := e.readNotices()
	r.until("flush", isFlush(events.FlushNoCheckpoint))
	res, err := e.coll.InsertOne(ctx, bson.M{"userId": "pre"})
	if err != nil {
		t.Fatal(err)
	}
	r.until("insert", isUser("pre", "insert"))
	if _, err := e.coll.DeleteOne(ctx, bson.M{"_id": res.InsertedID}); err != nil {
		t.Fatal(err)
	}
	got := r.next()
	if e.mongo.StandIn != nil {
		// Stand-in gap: no collMod (CommandNotFound), no pre-images. The
		// notifier warned and carried on; the delete names the document.
		if got.Operation != "delete" || got.UserID != "" || got.DocumentID != res.InsertedID.(bson.ObjectID).Hex() {
			t.Fatalf("delete on the stand-in: got %v, want a document notice", got)
		}
		return
	}
	if !isUser("pre", "delete")(got) {
		t.Fatalf("delete with pre-images: got %v, want a user notice for pre", got)
	}
}

func TestNotifierHealthAndConfig(t *testing.T) {
	e := newNotifierEnv(t)
	n, err := New(e.js, e.db, e.cfg, WithData(e.data), WithStreams(e.streams))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Healthy(); !errors.Is(err, ErrNotifierNotRunning) {
		t.Fatalf("Healthy before Run = %v, want ErrNotifierNotRunning", err)
	}
	r := e.start()
	testsupport.Eventually(t, "leads", r.IsLeader)
	if err := r.Healthy(); err != nil {
		t.Fatalf("Healthy = %v", err)
	}
	bad := e.data
	bad.Database = "other"
	if _, err := New(e.js, e.db, e.cfg, WithData(bad), WithStreams(e.streams)); err == nil {
		t.Fatal("New accepted a database that is not the one given")
	}
}

func TestNotifierProvisionVerify(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	verify := e.streams
	verify.Mode = provision.Verify
	n, err := New(e.js, e.db, e.cfg, WithData(e.data), WithStreams(verify))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Provision(ctx); err == nil {
		t.Fatal("verify passed with nothing provisioned")
	}
	e.provision()
	if err := n.Provision(ctx); err != nil {
		t.Fatalf("verify after create: %v", err)
	}
	other := e.cfg
	other.LeaseTTL = 5 * time.Second
	n2, err := New(e.js, e.db, other, WithData(e.data), WithStreams(verify))
	if err != nil {
		t.Fatal(err)
	}
	if err := n2.Provision(ctx); err == nil || !strings.Contains(err.Error(), "TTL") {
		t.Fatalf("verify with another lease TTL = %v, want a TTL mismatch", err)
	}
}

// TestNotifierNeverDropsAnUnattributableChange: changes made while the
// notifier is down are read after the restart; by then the document is
// gone.
func TestNotifierNeverDropsAnUnattributableChange(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	n1 := e.start()
	r := e.readNotices()
	r.until("flush", isFlush(events.FlushNoCheckpoint))
	res, err := e.coll.InsertOne(ctx, bson.M{"userId": "gone"})
	if err != nil {
		t.Fatal(err)
	}
	id := res.InsertedID.(bson.ObjectID).Hex()
	r.until("insert", isUser("gone", "insert"))
	n1.stop(false)

	if _, err := e.coll.UpdateOne(ctx, bson.M{"_id": res.InsertedID}, bson.M{"$inc": bson.M{"logins": 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.coll.DeleteOne(ctx, bson.M{"_id": res.InsertedID}); err != nil {
		t.Fatal(err)
	}
	e.start()
	got := r.next()
	// fullDocument is null (on the stand-in: the $inc delta, which names
	// no user) but documentKey names the document. The flush-all for a
	// change that names neither is covered by TestNoticeMapChange's
	// fixtures.
	if got.Kind != events.NoticeUser || got.DocumentID != id || got.Operation != "update" {
		t.Fatalf("update of a deleted document: got %v, want a document notice for %s", got, id)
	}
	if got := r.next(); got.Operation != "delete" || got.DocumentID != id {
		t.Fatalf("got %v, want the delete of %s", got, id)
	}
}

func TestNotifierCollectionDroppedWhileStopped(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	n1 := e.start()
	r := e.readNotices()
	r.until("flush", isFlush(events.FlushNoCheckpoint))
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "before"}); err != nil {
		t.Fatal(err)
	}
	r.until("before", isUser("before", "insert"))
	n1.stop(false)

	if err := e.coll.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "after"}); err != nil {
		t.Fatal(err)
	}
	e.start()
	got := r.until("after", isUser("after", "insert"))
	if !slices.ContainsFunc(got, func(n receivedNotice) bool { return n.Kind == events.NoticeFlushAll }) {
		t.Fatalf("after a drop while stopped: got %v, want a flush-all before the insert", got)
	}
	t.Logf("notices: %v", got)
	r.quiet(time.Second)
}

func TestNotifierSurvivesAMongoOutage(t *testing.T) {
	m := testsupport.PrivateMongoDB(t)
	client, err := mongo.Connect(options.Client().ApplyURI(m.URI).SetServerSelectionTimeout(2 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	e := newNotifierEnvOn(t, m, client)
	ctx := testsupport.Context(t)
	n := e.start(func(c *Config) { c.UnhealthyAfter = 300 * time.Millisecond })
	r := e.readNotices()
	r.until("flush", isFlush(events.FlushNoCheckpoint))
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "a"}); err != nil {
		t.Fatal(err)
	}
	a := r.until("a", isUser("a", "insert"))
	e.waitCheckpoint(a[len(a)-1].ClusterTime)

	if m.StandIn != nil {
		if err := m.StandIn.Stop(); err != nil {
			t.Fatal(err)
		}
		testsupport.Eventually(t, "unhealthy during the outage", func() bool { return errors.Is(n.Healthy(), ErrNotifierUnhealthy) })
		if err := m.StandIn.Start(); err != nil {
			t.Fatal(err)
		}
	}
	// The first operation on a pooled connection the outage cut may fail.
	testsupport.Eventually(t, "insert after the outage", func() bool {
		_, err := e.coll.InsertOne(ctx, bson.M{"userId": "b"})
		return err == nil
	})
	got := r.until("b", isUser("b", "insert"))
	assertNoFlush(t, got) // transient: reopened from the checkpoint
	testsupport.Eventually(t, "healthy again", func() bool { return n.Healthy() == nil })
}
