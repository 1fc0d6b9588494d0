package customdata

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/triggers"
)

func TestCustomDataConfigDefaultsAndValidate(t *testing.T) {
	var zero Config
	zero.SetDefaults()
	if zero.UserIDField != "userId" || zero.WriteConcern != "majority" || zero.WriteTimeout != DefaultWriteTimeout || zero.AllowDuplicates {
		t.Fatalf("defaults = %+v", zero)
	}
	ok := Config{Database: "app", Collection: "users"}
	cases := []struct {
		name    string
		mut     func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"w number", func(c *Config) { c.WriteConcern = "2" }, ""},
		{"w zero refused", func(c *Config) { c.WriteConcern = "0" }, "write concern"},
		{"w garbage", func(c *Config) { c.WriteConcern = "all" }, "write concern"},
		{"no database", func(c *Config) { c.Database = "" }, "database"},
		{"no collection", func(c *Config) { c.Collection = "" }, "collection"},
		{"dotted field", func(c *Config) { c.UserIDField = "user.id" }, "user id field"},
		{"operator field", func(c *Config) { c.UserIDField = "$id" }, "user id field"},
		{"_id field", func(c *Config) { c.UserIDField = "_id" }, "user id field"},
		{"negative timeout", func(c *Config) { c.WriteTimeout = -time.Second }, "timeout"},
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
	w := &Writer{field: "uid"}
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
	if err := w.Check(triggers.Write{UserID: "u1", Set: map[string]any{"uid": "u2"}}); !errors.Is(err, triggers.ErrPermanent) {
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
	cfg := Config{Database: "unused", Collection: "users"}
	ctx := testsupport.Context(t)
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
	ctx := testsupport.Context(t)
	if _, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "userId", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	err := EnsureUserIndex(ctx, coll, Config{}, zerolog.Nop())
	if !errors.Is(err, ErrUserIndexConflict) {
		t.Fatalf("EnsureUserIndex over a plain index = %v, want ErrUserIndexConflict", err)
	}
	// Opting in to duplicates accepts the plain index.
	if err := EnsureUserIndex(ctx, coll, Config{AllowDuplicates: true}, zerolog.Nop()); err != nil {
		t.Fatalf("with AllowDuplicates: %v", err)
	}
}
