package notify

import (
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// TestChangeStreamProjectionKeepsWhatOwnerChangesNeed runs the notifier's
// $project, on the test server's aggregation engine, over documents shaped
// like the change events a real MongoDB emits for an owner change, and maps
// the result. It proves the projection keeps the operation type, the names
// of updated, removed and truncated fields and the pre-image's user id,
// which the mapper needs to tell the previous owner. (The stand-in's change
// streams carry no updateDescription, no replace and no pre-images, so the
// events are stored as plain documents and projected with an aggregate.)
func TestChangeStreamProjectionKeepsWhatOwnerChangesNeed(t *testing.T) {
	m := testsupport.MongoDB(t)
	coll := m.Client(t).Database(testsupport.DatabaseName(t)).Collection("events")
	ctx := testsupport.Context(t)
	const prefix = "p"
	id := bson.NewObjectID()
	token := bson.D{{Key: "_data", Value: "8265A1B2C3000000012B022C0100296E5A1004"}}
	cases := []struct {
		name  string
		event bson.D
		// want: subjects of the notices, in order
		want []string
	}{
		{
			name: "update moving the document, no pre-image",
			event: bson.D{
				{Key: "_id", Value: token}, {Key: "operationType", Value: "update"},
				{Key: "clusterTime", Value: bson.Timestamp{T: 1700000000, I: 1}},
				{Key: "ns", Value: bson.D{{Key: "db", Value: "app"}, {Key: "coll", Value: "c"}}},
				{Key: "documentKey", Value: bson.D{{Key: "_id", Value: id}}},
				{Key: "updateDescription", Value: bson.D{
					{Key: "updatedFields", Value: bson.D{{Key: "userId", Value: "bob"}, {Key: "plan", Value: "pro"}}},
					{Key: "removedFields", Value: bson.A{}}, {Key: "truncatedArrays", Value: bson.A{}},
				}},
				{Key: "fullDocument", Value: bson.D{{Key: "_id", Value: id}, {Key: "userId", Value: "bob"}, {Key: "plan", Value: "pro"}}},
			},
			want: []string{events.UserNoticeSubject(prefix, "bob"), events.DocumentNoticeSubject(prefix, id.Hex())},
		},
		{
			name: "update truncating an array at the user-id field, no pre-image",
			event: bson.D{
				{Key: "_id", Value: token}, {Key: "operationType", Value: "update"},
				{Key: "documentKey", Value: bson.D{{Key: "_id", Value: id}}},
				{Key: "updateDescription", Value: bson.D{
					{Key: "updatedFields", Value: bson.D{}}, {Key: "removedFields", Value: bson.A{}},
					{Key: "truncatedArrays", Value: bson.A{bson.D{{Key: "field", Value: "userId"}, {Key: "newSize", Value: 1}}}},
				}},
				{Key: "fullDocument", Value: bson.D{{Key: "_id", Value: id}, {Key: "userId", Value: "bob"}}},
			},
			want: []string{events.UserNoticeSubject(prefix, "bob"), events.DocumentNoticeSubject(prefix, id.Hex())},
		},
		{
			name: "update of another field",
			event: bson.D{
				{Key: "_id", Value: token}, {Key: "operationType", Value: "update"},
				{Key: "documentKey", Value: bson.D{{Key: "_id", Value: id}}},
				{Key: "updateDescription", Value: bson.D{
					{Key: "updatedFields", Value: bson.D{{Key: "plan", Value: "pro"}}}, {Key: "removedFields", Value: bson.A{"trial"}},
				}},
				{Key: "fullDocument", Value: bson.D{{Key: "_id", Value: id}, {Key: "userId", Value: "bob"}}},
			},
			want: []string{events.UserNoticeSubject(prefix, "bob")},
		},
		{
			name: "replace, no pre-image",
			event: bson.D{
				{Key: "_id", Value: token}, {Key: "operationType", Value: "replace"},
				{Key: "documentKey", Value: bson.D{{Key: "_id", Value: id}}},
				{Key: "fullDocument", Value: bson.D{{Key: "_id", Value: id}, {Key: "userId", Value: "bob"}}},
			},
			want: []string{events.UserNoticeSubject(prefix, "bob"), events.DocumentNoticeSubject(prefix, id.Hex())},
		},
		{
			name: "replace with a pre-image naming another user",
			event: bson.D{
				{Key: "_id", Value: token}, {Key: "operationType", Value: "replace"},
				{Key: "documentKey", Value: bson.D{{Key: "_id", Value: id}}},
				{Key: "fullDocument", Value: bson.D{{Key: "_id", Value: id}, {Key: "userId", Value: "bob"}}},
				{Key: "fullDocumentBeforeChange", Value: bson.D{{Key: "_id", Value: id}, {Key: "userId", Value: "alice"}, {Key: "plan", Value: "free"}}},
			},
			want: []string{events.UserNoticeSubject(prefix, "bob"), events.UserNoticeSubject(prefix, "alice")},
		},
	}
	for _, serverSize := range []bool{false, true} {
		if serverSize && m.StandIn != nil {
			continue // stand-in gap: no $bsonSize (see TestFeedPipelineOnTheServer)
		}
		for _, tc := range cases {
			if err := coll.Drop(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := coll.InsertOne(ctx, tc.event); err != nil {
				t.Fatalf("%s: store the event: %v", tc.name, err)
			}
			cur, err := coll.Aggregate(ctx, feedPipeline("userId", serverSize, partition{}))
			if err != nil {
				t.Fatalf("%s (server size %v): project: %v", tc.name, serverSize, err)
			}
			var out []bson.Raw
			if err := cur.All(ctx, &out); err != nil || len(out) != 1 {
				t.Fatalf("%s (server size %v): projected %d events, err %v", tc.name, serverSize, len(out), err)
			}
			mc := noticeMapper{prefix: prefix, userIDField: "userId", oversizeBytes: 16384, measureFullDocument: !serverSize}.mapChange(out[0])
			var got []string
			for _, n := range mc.Notices {
				got = append(got, n.Subject)
			}
			if len(got) != len(tc.want) || (len(got) > 0 && got[0] != tc.want[0]) || (len(got) > 1 && got[1] != tc.want[1]) {
				t.Errorf("%s (server size %v): projected event %s maps to notices on %q, want %q", tc.name, serverSize, out[0], got, tc.want)
			}
		}
	}
}

// TestNotifierTellsThePreviousOwner: a document moved from alice to bob
// (by $set, by replace) or stripped of its user id ($unset) must reach
// alice's issuer too. Without pre-images it does so through the document
// notice, which issuers index by _id.
func TestNotifierTellsThePreviousOwner(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	e.start()
	r := e.readNotices()
	r.until("flush", isFlush(events.FlushNoCheckpoint))
	prefix := events.DefaultNoticePrefix

	res, err := e.coll.InsertOne(ctx, bson.D{{Key: "userId", Value: "alice"}, {Key: "plan", Value: "free"}})
	if err != nil {
		t.Fatal(err)
	}
	id := res.InsertedID.(bson.ObjectID).Hex()
	docSubject := events.DocumentNoticeSubject(prefix, id)
	r.until("insert", isUser("alice", "insert"))

	isDoc := func(n receivedNotice) bool {
		return n.Subject == docSubject && n.Kind == events.NoticeUser && n.UserID == "" && n.DocumentID == id
	}
	if _, err := e.coll.UpdateOne(ctx, bson.M{"_id": res.InsertedID}, bson.M{"$set": bson.M{"userId": "bob"}}); err != nil {
		t.Fatal(err)
	}
	got := r.next()
	if !isUser("bob", "update")(got) || got.DocumentID != id {
		t.Fatalf("$set userId: first notice %v on %s, want bob's", got, got.Subject)
	}
	if e.mongo.StandIn == nil {
		if got = r.next(); !isDoc(got) || got.Operation != "update" {
			t.Fatalf("$set userId: second notice %v on %s, want the document notice on %s", got, got.Subject, docSubject)
		}
	}
	// Stand-in gap: its update events carry no updateDescription, so
	// nothing says the user id changed and only bob is told (covered by
	// the fixtures of TestNoticeMapChange instead).

	if _, err := e.coll.ReplaceOne(ctx, bson.M{"_id": res.InsertedID}, bson.M{"userId": "carol"}); err != nil {
		t.Fatal(err)
	}
	got = r.next()
	if e.mongo.StandIn != nil {
		// Stand-in gap: a replace is reported as an update without
		// updateDescription; only carol is told.
		if !isUser("carol", "update")(got) {
			t.Fatalf("replace on the stand-in: got %v, want carol's notice", got)
		}
	} else {
		if !isUser("carol", "replace")(got) {
			t.Fatalf("replace: first notice %v, want carol's", got)
		}
		if got = r.next(); !isDoc(got) || got.Operation != "replace" {
			t.Fatalf("replace: second notice %v on %s, want the document notice on %s", got, got.Subject, docSubject)
		}
	}

	// $unset: the document names nobody now; the document notice is the
	// notice (on the stand-in too: its looked-up document carries _id).
	if _, err := e.coll.UpdateOne(ctx, bson.M{"_id": res.InsertedID}, bson.M{"$unset": bson.M{"userId": ""}}); err != nil {
		t.Fatal(err)
	}
	if got = r.next(); !isDoc(got) || got.Operation != "update" {
		t.Fatalf("$unset userId: got %v on %s, want the document notice on %s", got, got.Subject, docSubject)
	}
	r.quiet(500 * time.Millisecond)
}
