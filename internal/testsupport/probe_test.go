package testsupport

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestStandInSupportsWhatTheWorkerNeeds proves the driver/server pairing the
// integration tests rely on: connect, write, change stream, resume, and an
// outage that keeps data.
func TestStandInSupportsWhatTheWorkerNeeds(t *testing.T) {
	m := PrivateMongoDB(t)
	c := m.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	coll := c.Database(DatabaseName(t)).Collection("users")
	if _, err := coll.InsertOne(ctx, bson.M{"userId": "seed"}); err != nil {
		t.Fatalf("insert: %v", err)
	}
	cs, err := coll.Watch(ctx, []bson.D{}, options.ChangeStream().SetFullDocument(options.UpdateLookup))
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer cs.Close(ctx)
	if _, err := coll.InsertOne(ctx, bson.M{"userId": "u1"}); err != nil {
		t.Fatalf("insert: %v", err)
	}
	if !cs.Next(ctx) {
		t.Fatalf("no change event: %v", cs.Err())
	}
	var ev struct {
		OperationType string `bson:"operationType"`
		FullDocument  bson.M `bson:"fullDocument"`
	}
	if err := cs.Decode(&ev); err != nil {
		t.Fatal(err)
	}
	if ev.OperationType != "insert" || ev.FullDocument["userId"] != "u1" {
		t.Fatalf("change event = %+v, want insert of u1", ev)
	}
	token := cs.ResumeToken()

	if m.StandIn != nil {
		if err := m.StandIn.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := m.StandIn.Start(); err != nil {
			t.Fatal(err)
		}
	}
	// The first operation on a pooled connection that the outage cut may
	// fail, as it would against a real server; a client retries.
	var insertErr error
	for range 3 {
		if _, insertErr = coll.InsertOne(ctx, bson.M{"userId": "u2"}); insertErr == nil {
			break
		}
	}
	if insertErr != nil {
		t.Fatalf("insert after outage: %v", insertErr)
	}
	n, err := coll.CountDocuments(ctx, bson.M{})
	if err != nil || n != 3 {
		t.Fatalf("after outage: %d documents, err %v; want 3", n, err)
	}
	resumed, err := coll.Watch(ctx, []bson.D{}, options.ChangeStream().SetResumeAfter(token))
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	defer resumed.Close(ctx)
	if !resumed.Next(ctx) {
		t.Fatalf("no event after resume: %v", resumed.Err())
	}
	if err := resumed.Decode(&ev); err != nil || ev.FullDocument["userId"] != "u2" {
		t.Fatalf("resumed event = %+v (%v), want insert of u2", ev, err)
	}
}
