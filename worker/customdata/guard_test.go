package customdata

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// commandLog records the commands a client sends.
type commandLog struct {
	mu   sync.Mutex
	cmds []bson.Raw
}

func (c *commandLog) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.cmds = append(c.cmds, append(bson.Raw(nil), e.Command...))
	}}
}

// take returns the recorded commands called name and forgets all.
func (c *commandLog) take(name string) []bson.Raw {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []bson.Raw
	for _, cmd := range c.cmds {
		if elems, err := cmd.Elements(); err == nil && len(elems) > 0 && elems[0].Key() == name {
			out = append(out, cmd)
		}
	}
	c.cmds = nil
	return out
}

func guardClient(t *testing.T, m *testsupport.Mongo, log *commandLog) *mongo.Client {
	t.Helper()
	opts := options.Client().ApplyURI(m.URI).SetServerSelectionTimeout(10 * time.Second)
	if log != nil {
		opts.SetMonitor(log.monitor())
	}
	c, err := mongo.Connect(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

// TestCollectionGuardReportsDuplicatesAndRecovers: a collection that comes
// back holding two documents for one user cannot get its unique index. The
// guard says so as startup does (ErrDuplicateUsers naming the user), keeps
// the worker running, and restores the index once an operator removed the
// later document. check is called directly so the duplicates are in place
// before the guard looks.
func TestCollectionGuardReportsDuplicatesAndRecovers(t *testing.T) {
	m := testsupport.MongoDB(t)
	coll := guardClient(t, m, nil).Database(testsupport.DatabaseName(t)).Collection("users")
	ctx := testsupport.Context(t)
	cfg := Config{Database: coll.Database().Name(), Collection: coll.Name()}
	if err := EnsureUserIndex(ctx, coll, cfg, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	g, err := NewGuard(coll, cfg, false, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	g.check(ctx)
	if err := g.Healthy(); err != nil {
		t.Fatalf("Healthy with the index in place = %v", err)
	}

	if err := coll.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	g.check(ctx)
	if err := g.Healthy(); !errors.Is(err, ErrUserIndexMissing) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Healthy with the collection gone = %v, want ErrUserIndexMissing saying it does not exist", err)
	}

	var twins []any
	for range 2 {
		res, err := coll.InsertOne(ctx, bson.M{"userId": "twin"})
		if err != nil {
			t.Fatal(err)
		}
		twins = append(twins, res.InsertedID)
	}
	g.check(ctx)
	if err := g.Healthy(); !errors.Is(err, ErrDuplicateUsers) || !strings.Contains(err.Error(), `"twin"`) {
		t.Fatalf("Healthy with duplicates = %v, want ErrDuplicateUsers naming twin", err)
	}

	if _, err := coll.DeleteOne(ctx, bson.M{"_id": twins[1]}); err != nil {
		t.Fatal(err)
	}
	g.check(ctx)
	if err := g.Healthy(); err != nil {
		t.Fatalf("Healthy after the duplicate was removed = %v", err)
	}
	if _, err := coll.InsertOne(ctx, bson.M{"userId": "twin"}); !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("a second document for twin = %v, want a duplicate-key refusal", err)
	}
}

// TestCollectionGuardRestoresPreImagesOnARecreatedCollection checks, with
// the driver's command monitor, that the guard enables
// changeStreamPreAndPostImages again on a collection that came back, and
// only then. The stand-in has no collMod (CommandNotFound): the guard logs
// the refusal and carries on, so there the test asserts the decision (the
// command sent); on real MongoDB 6.0+ it also reads the option back.
func TestCollectionGuardRestoresPreImagesOnARecreatedCollection(t *testing.T) {
	m := testsupport.MongoDB(t)
	cmds := &commandLog{}
	client := guardClient(t, m, cmds)
	coll := client.Database(testsupport.DatabaseName(t)).Collection("users")
	ctx := testsupport.Context(t)
	cfg := Config{Database: coll.Database().Name(), Collection: coll.Name()}
	if err := EnsureUserIndex(ctx, coll, cfg, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	g, err := NewGuard(coll, cfg, true, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	cmds.take("")
	g.check(ctx)
	// At startup the notifier enables pre-images (Provision); the guard
	// only restores them on a collection that comes back.
	if got := cmds.take("collMod"); len(got) != 0 {
		t.Fatalf("collMod on the collection startup prepared: %v", got)
	}

	if err := coll.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	g.check(ctx)
	if _, err := coll.InsertOne(ctx, bson.M{"userId": "back"}); err != nil {
		t.Fatal(err)
	}
	g.check(ctx)
	got := cmds.take("collMod")
	if len(got) != 1 {
		t.Fatalf("collMod commands after the collection came back: %v, want one", got)
	}
	if name, _ := got[0].Lookup("collMod").StringValueOK(); name != coll.Name() {
		t.Errorf("collMod of %q, want %q", name, coll.Name())
	}
	if enabled, ok := got[0].Lookup("changeStreamPreAndPostImages", "enabled").BooleanOK(); !ok || !enabled {
		t.Errorf("collMod %s does not enable changeStreamPreAndPostImages", got[0])
	}
	if err := g.Healthy(); err != nil {
		t.Fatalf("Healthy after the collection came back = %v", err)
	}

	g.check(ctx)
	if got := cmds.take("collMod"); len(got) != 0 {
		t.Fatalf("collMod repeated on a collection already handled: %v", got)
	}
	if m.StandIn == nil && serverMajorVersion(t, client) >= 6 {
		specs, err := coll.Database().ListCollectionSpecifications(ctx, bson.D{{Key: "name", Value: coll.Name()}})
		if err != nil || len(specs) != 1 {
			t.Fatalf("list collections: %v %v", specs, err)
		}
		if on, _ := specs[0].Options.Lookup("changeStreamPreAndPostImages", "enabled").BooleanOK(); !on {
			t.Fatalf("options of the recreated collection = %s, want changeStreamPreAndPostImages enabled", specs[0].Options)
		}
	}
}

func serverMajorVersion(t *testing.T, c *mongo.Client) int32 {
	t.Helper()
	var info struct {
		VersionArray []int32 `bson:"versionArray"`
	}
	if err := c.Database("admin").RunCommand(testsupport.Context(t), bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err != nil || len(info.VersionArray) == 0 {
		t.Fatalf("buildInfo: %v", err)
	}
	return info.VersionArray[0]
}

// TestCollectionGuardWithAllowDuplicates: no unique index is promised, so
// the guard stays ready, and it restores the plain lookup index.
func TestCollectionGuardWithAllowDuplicates(t *testing.T) {
	m := testsupport.MongoDB(t)
	coll := guardClient(t, m, nil).Database(testsupport.DatabaseName(t)).Collection("users")
	ctx := testsupport.Context(t)
	cfg := Config{Database: coll.Database().Name(), Collection: coll.Name(), AllowDuplicates: true}
	if err := EnsureUserIndex(ctx, coll, cfg, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	g, err := NewGuard(coll, cfg, false, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := coll.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	g.check(ctx)
	for range 2 {
		if _, err := coll.InsertOne(ctx, bson.M{"userId": "twin"}); err != nil {
			t.Fatal(err)
		}
	}
	g.check(ctx)
	if err := g.Healthy(); err != nil {
		t.Fatalf("Healthy with AllowDuplicates = %v, want nil", err)
	}
	ix, err := userFieldIndexes(ctx, coll, "userId")
	if err != nil || len(ix) != 1 || ix[0].unique {
		t.Fatalf("indexes on userId after the collection came back = %+v (%v), want one plain index", ix, err)
	}
}

// TestCollectionGuardReportsARefusedCheck: listCollections or listIndexes
// refused for a reason waiting cannot fix (a missing privilege) must make
// the replica not ready and say why; an outage leaves the last known state.
// The stand-in has no users or roles, so the errors are built as the driver
// returns them (mongo.CommandError) and given to the guard's decision.
func TestCollectionGuardReportsARefusedCheck(t *testing.T) {
	unauthorized := mongo.CommandError{Code: 13, Name: "Unauthorized",
		Message: "not authorized on app to execute command { listCollections: 1 }"}
	down := mongo.CommandError{Code: 91, Name: "ShutdownInProgress", Labels: []string{"RetryableError"}}
	for _, tt := range []struct {
		name      string
		err       error
		wantReady bool
	}{
		{"missing privilege", fmt.Errorf("list collections: %w", unauthorized), false},
		{"server shutting down", fmt.Errorf("list collections: %w", down), true},
		{"network", fmt.Errorf("list collections: %w", mongo.CommandError{Labels: []string{"NetworkError"}}), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g, err := NewGuard(guardClient(t, testsupport.MongoDB(t), nil).Database("d").Collection("c"),
				Config{Database: "d", Collection: "c"}, false, zerolog.New(zerolog.NewTestWriter(t)))
			if err != nil {
				t.Fatal(err)
			}
			g.checkFailed("list collections", tt.err)
			got := g.Healthy()
			if tt.wantReady && got != nil {
				t.Fatalf("Healthy after %v = %v, want nil (an outage: the last state stands)", tt.err, got)
			}
			if !tt.wantReady && (!errors.Is(got, ErrCollectionUncheckable) || !strings.Contains(got.Error(), "Unauthorized")) {
				t.Fatalf("Healthy after %v = %v, want ErrCollectionUncheckable naming the refusal", tt.err, got)
			}
		})
	}
}
