package issuer_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/issuer"
)

func TestSourceReadsTheFirstInsertedDocument(t *testing.T) {
	m := testsupport.MongoDB(t)
	client := m.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := testsupport.DatabaseName(t)
	coll := client.Database(db).Collection("profiles")
	t.Cleanup(func() { _ = client.Database(db).Drop(context.Background()) })

	// Two documents for one user (a worker with ALLOW_DUPLICATE_USERS, no
	// unique index): the lower _id is the first inserted, and wins even
	// though it is inserted second here.
	older := bson.NewObjectIDFromTimestamp(time.Now().Add(-time.Hour))
	newer := bson.NewObjectIDFromTimestamp(time.Now())
	if _, err := coll.InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: newer}, {Key: "uid", Value: "ada"}, {Key: "plan", Value: "later"}},
		bson.D{{Key: "_id", Value: older}, {Key: "uid", Value: "ada"}, {Key: "plan", Value: "first"}},
		bson.D{{Key: "uid", Value: "big"}, {Key: "blob", Value: strings.Repeat("x", 300)}},
	}); err != nil {
		t.Fatal(err)
	}
	src, err := issuer.NewSource(client, issuer.SourceConfig{Database: db, Collection: "profiles", UserIDField: "uid", OversizeBytes: 256})
	if err != nil {
		t.Fatal(err)
	}
	d, err := src.Get(ctx, "ada")
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Lookup("plan").StringValue(); got != "first" || d.DocumentID() != older.Hex() {
		t.Fatalf("Get(ada) = plan %q, _id %s; want the first inserted (%s)", got, d.DocumentID(), older.Hex())
	}
	if string(d.JSON()) == "" || !strings.Contains(string(d.JSON()), `"plan":"first"`) {
		t.Fatalf("JSON = %s", d.JSON())
	}

	d, err = src.Get(ctx, "nobody")
	if err != nil || d.Found() || d.JSON() != nil {
		t.Fatalf("Get(nobody) = %+v, %v; want not found", d, err)
	}

	// Oversize: flagged by default, refused when asked.
	d, err = src.Get(ctx, "big")
	if err != nil || !d.Oversize() || d.Raw() == nil {
		t.Fatalf("oversize flagged: %v, oversize=%v", err, d.Oversize())
	}
	refusing, err := issuer.NewSource(client, issuer.SourceConfig{Database: db, Collection: "profiles", UserIDField: "uid", OversizeBytes: 256, Oversize: issuer.OversizeRefuse})
	if err != nil {
		t.Fatal(err)
	}
	d, err = refusing.Get(ctx, "big")
	if !errors.Is(err, issuer.ErrOversize) || d.Raw() != nil || d.Size() <= 256 {
		t.Fatalf("oversize refused: %v, raw=%v size=%d", err, d.Raw() != nil, d.Size())
	}
	if _, err := refusing.Get(ctx, "ada"); err != nil {
		t.Fatalf("a small document is not refused: %v", err)
	}
}

func TestSourceConfigDefaultsAreTheWorkers(t *testing.T) {
	if _, err := issuer.NewSource(nil, issuer.SourceConfig{}); err == nil {
		t.Fatal("nil client accepted")
	}
	for _, bad := range []issuer.SourceConfig{{UserIDField: "_id"}, {UserIDField: "$x"}, {Oversize: 7}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if issuer.DefaultDatabase != "app" || issuer.DefaultCollection != "custom_user_data" ||
		issuer.DefaultUserIDField != "userId" || issuer.DefaultOversizeBytes != 16384 {
		t.Fatal("defaults drifted from the worker's README")
	}
}

// TestSourceReadsMajorityCommittedDataFromThePrimary: whatever the
// client's defaults (here secondaryPreferred and read concern local), a
// read sends read concern majority and selects the primary, so a re-read
// after a notice never returns what a lagging secondary or a write that
// may be rolled back holds.
func TestSourceReadsMajorityCommittedDataFromThePrimary(t *testing.T) {
	m := testsupport.MongoDB(t)
	var mu sync.Mutex
	var finds []bson.Raw
	monitor := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		if e.CommandName == "find" {
			mu.Lock()
			finds = append(finds, e.Command)
			mu.Unlock()
		}
	}}
	opts := options.Client().ApplyURI(m.URI).SetMonitor(monitor).
		SetReadPreference(readpref.SecondaryPreferred()).SetReadConcern(readconcern.Local())
	client, err := mongo.Connect(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	src, err := issuer.NewSource(client, issuer.SourceConfig{Database: testsupport.DatabaseName(t), Collection: "profiles"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Get(testsupport.Context(t), "ada"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(finds) != 1 {
		t.Fatalf("%d find commands, want 1", len(finds))
	}
	level, _ := finds[0].Lookup("readConcern", "level").StringValueOK()
	if level != "majority" {
		t.Fatalf("find sent read concern %q, want majority: %s", level, finds[0])
	}
	if mode, ok := finds[0].Lookup("$readPreference", "mode").StringValueOK(); ok && mode != "primary" && mode != "primaryPreferred" {
		t.Fatalf("find sent read preference %q, want the primary", mode)
	}
}
