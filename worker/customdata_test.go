package worker

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/triggers"
)

func TestCustomDataConfigDefaultsAndValidate(t *testing.T) {
	var zero CustomDataConfig
	zero.setDefaults()
	if zero.UserIDField != "userId" || zero.WriteConcern != "majority" || zero.WriteTimeout != DefaultWriteTimeout || zero.AllowDuplicates {
		t.Fatalf("defaults = %+v", zero)
	}
	ok := CustomDataConfig{Database: "app", Collection: "users"}
	cases := []struct {
		name    string
		mut     func(*CustomDataConfig)
		wantErr string
	}{
		{"defaults", func(*CustomDataConfig) {}, ""},
		{"w number", func(c *CustomDataConfig) { c.WriteConcern = "2" }, ""},
		{"w zero refused", func(c *CustomDataConfig) { c.WriteConcern = "0" }, "write concern"},
		{"w garbage", func(c *CustomDataConfig) { c.WriteConcern = "all" }, "write concern"},
		{"no database", func(c *CustomDataConfig) { c.Database = "" }, "database"},
		{"no collection", func(c *CustomDataConfig) { c.Collection = "" }, "collection"},
		{"dotted field", func(c *CustomDataConfig) { c.UserIDField = "user.id" }, "user id field"},
		{"operator field", func(c *CustomDataConfig) { c.UserIDField = "$id" }, "user id field"},
		{"_id field", func(c *CustomDataConfig) { c.UserIDField = "_id" }, "user id field"},
		{"negative timeout", func(c *CustomDataConfig) { c.WriteTimeout = -time.Second }, "timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mut(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate = %v, want an error about %q", err, tc.wantErr)
			}
		})
	}
}

func TestCustomDataWriteModels(t *testing.T) {
	w := &customDataWriter{field: "uid"}
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		name   string
		write  triggers.Write
		target any
		want   string
	}{
		{"delete many", triggers.Write{UserID: "u1", Delete: true}, nil,
			`*mongo.DeleteManyModel filter={"uid":"u1"}`},
		{"upsert with operators", triggers.Write{UserID: "u1", Upsert: true, Set: map[string]any{"a": 1}, Max: map[string]any{"t": at}, SetOnInsert: map[string]any{"c": "x"}}, nil,
			`*mongo.UpdateOneModel filter={"uid":"u1"} upsert=true update=[$set $max $setOnInsert]`},
		{"resolved target", triggers.Write{UserID: "u1", Max: map[string]any{"t": at}}, "first-id",
			`*mongo.UpdateOneModel filter={"_id":"first-id","uid":"u1"} upsert=false update=[$max]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := describeModel(t, w.model(tc.write, tc.target)); got != tc.want {
				t.Fatalf("model = %s\nwant    %s", got, tc.want)
			}
		})
	}
	if err := w.checkWrite(triggers.Write{UserID: "u1", Set: map[string]any{"uid": "u2"}}); !errors.Is(err, triggers.ErrPermanent) {
		t.Fatalf("a write of the user-id field = %v, want ErrPermanent", err)
	}
}

func describeModel(t *testing.T, m mongo.WriteModel) string {
	t.Helper()
	js := func(v any) string {
		b, err := bson.MarshalExtJSON(v, false, false)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	switch x := m.(type) {
	case *mongo.DeleteManyModel:
		return fmt.Sprintf("%T filter=%s", m, js(x.Filter))
	case *mongo.UpdateOneModel:
		var ops []string
		for _, e := range x.Update.(bson.D) {
			ops = append(ops, e.Key)
		}
		return fmt.Sprintf("%T filter=%s upsert=%v update=%v", m, js(x.Filter), x.Upsert != nil && *x.Upsert, ops)
	}
	return fmt.Sprintf("%T", m)
}

func TestCustomDataEnsureUserIndexIsIdempotentAndUnique(t *testing.T) {
	m := testsupport.MongoDB(t)
	coll := m.Client(t).Database(testsupport.DatabaseName(t)).Collection("users")
	cfg := CustomDataConfig{Database: "unused", Collection: "users"}
	ctx, cancel := authTestCtx()
	defer cancel()
	for i := range 2 {
		if err := EnsureUserIndex(ctx, coll, cfg, zerolog.Nop()); err != nil {
			t.Fatalf("EnsureUserIndex #%d: %v", i+1, err)
		}
	}
	if _, err := coll.InsertOne(ctx, bson.M{"userId": "u1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertOne(ctx, bson.M{"userId": "u1"}); !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("second document for one user = %v, want a duplicate-key error", err)
	}
}

func TestCustomDataEnsureUserIndexRefusesNonUniqueIndex(t *testing.T) {
	m := testsupport.MongoDB(t)
	coll := m.Client(t).Database(testsupport.DatabaseName(t)).Collection("users")
	ctx, cancel := authTestCtx()
	defer cancel()
	if _, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "userId", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	err := EnsureUserIndex(ctx, coll, CustomDataConfig{}, zerolog.Nop())
	if !errors.Is(err, ErrUserIndexConflict) {
		t.Fatalf("EnsureUserIndex over a plain index = %v, want ErrUserIndexConflict", err)
	}
	// Opting in to duplicates accepts the plain index.
	if err := EnsureUserIndex(ctx, coll, CustomDataConfig{AllowDuplicates: true}, zerolog.Nop()); err != nil {
		t.Fatalf("with AllowDuplicates: %v", err)
	}
}

func TestCustomDataDuplicatesFailByDefaultAndFirstInsertedWinsWhenAllowed(t *testing.T) {
	e := newAuthEnv(t, testsupport.MongoDB(t), func(e *authEnv) { e.data.AllowDuplicates = true })
	ctx, cancel := e.ctx()
	defer cancel()
	// Driver-generated ObjectIds grow with insertion order.
	var seeded []any
	for i, u := range []string{"dup-a", "dup-a", "dup-b", "dup-b", "dup-b", "single"} {
		res, err := e.coll.InsertOne(ctx, bson.M{"userId": u, "n": i})
		if err != nil {
			t.Fatal(err)
		}
		seeded = append(seeded, res.InsertedID)
	}

	strict := e.data
	strict.AllowDuplicates = false
	err := EnsureUserIndex(ctx, e.coll, strict, zerolog.Nop())
	if !errors.Is(err, ErrDuplicateUsers) {
		t.Fatalf("EnsureUserIndex over duplicates = %v, want ErrDuplicateUsers", err)
	}
	for _, want := range []string{`"dup-a"`, `"dup-b"`, "2 user ids", "remove or merge the later-inserted", "AllowDuplicates"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if strings.Contains(err.Error(), `"single"`) {
		t.Errorf("error names a user without duplicates: %v", err)
	}

	var logged bytes.Buffer
	if err := EnsureUserIndex(ctx, e.coll, e.data, zerolog.New(&logged)); err != nil {
		t.Fatalf("EnsureUserIndex with AllowDuplicates: %v", err)
	}
	if out := logged.String(); !strings.Contains(out, `"duplicated_users":2`) || !strings.Contains(out, "dup-a") || !strings.Contains(out, `"level":"warn"`) {
		t.Fatalf("warning = %s, want count and samples", out)
	}

	// Writes go to the first-inserted document of each user.
	cfg := triggers.DefaultConfig()
	e.set, err = triggers.NewSet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.start()
	at := authBaseTime()
	e.publish(e.event(events.OperationLogin, "dup-b", at))
	e.publish(e.event(events.OperationCreate, "dup-a", at)) // must not add a third document
	e.waitSettled()
	docs := e.docs("dup-b")
	if len(docs) != 3 {
		t.Fatalf("dup-b has %d documents, want 3", len(docs))
	}
	for _, d := range docs {
		hasLogin := d["lastLogin"] != nil
		if first := d["_id"] == seeded[2]; hasLogin != first {
			t.Fatalf("lastLogin written to %v (n=%v), want only the first-inserted document %v", d["_id"], d["n"], seeded[2])
		}
	}
	if n := len(e.docs("dup-a")); n != 2 {
		t.Fatalf("CREATE for a duplicated user left %d documents, want 2", n)
	}
	e.publish(e.event(events.OperationDelete, "dup-b", at))
	e.waitFor("every dup-b document deleted", func() bool { return len(e.docs("dup-b")) == 0 })
}
