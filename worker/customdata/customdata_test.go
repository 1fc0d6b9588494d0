package customdata

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
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
	if zero.Database != "app" || zero.Collection != "custom_user_data" || zero.UserIDField != "userId" || zero.WriteConcern != "majority" || zero.WriteTimeout != DefaultWriteTimeout || zero.AllowDuplicates {
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
		{"no database: the default", func(c *Config) { c.Database = "" }, ""},
		{"no collection: the default", func(c *Config) { c.Collection = "" }, ""},
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
			_, m, err := w.model(nil, tc.write, tc.target)
			if err != nil {
				t.Fatal(err)
			}
			if got := describeModel(t, m); got != tc.want {
				t.Fatalf("model = %s\nwant    %s", got, tc.want)
			}
		})
	}
	if err := w.Check(triggers.Write{UserID: "u1", Set: map[string]any{"uid": "u2"}}); !errors.Is(err, triggers.ErrPermanent) {
		t.Fatalf("a write of the user-id field = %v, want ErrPermanent", err)
	}
}

// TestEncodeMatchesDriver: the write models encoded with the bsoncore
// appenders are byte for byte what the driver's default registry makes of
// the same filter and update as bson.D (the encoding the writer used
// before), for every value type a trigger write may carry, with the fields
// under each operator in sorted order.
func TestEncodeMatchesDriver(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 678_901_234, time.UTC)
	before1970 := time.Date(1969, 12, 31, 23, 59, 59, 999_500_000, time.UTC)
	// What firstDocumentID returns: the _id as read from the server.
	idType, idData, err := bson.MarshalValue(bson.NewObjectID())
	if err != nil {
		t.Fatal(err)
	}
	rawID := bson.RawValue{Type: idType, Value: idData}
	cases := []struct {
		name   string
		write  triggers.Write
		target any
	}{
		{"lastLogin", triggers.Write{UserID: "u1", Max: map[string]any{"lastLogin": at}}, nil},
		{"lastLogin upsert", triggers.Write{UserID: "u1", Upsert: true, Max: map[string]any{"lastLogin": at.In(time.FixedZone("x", 3600))}}, nil},
		{"before 1970", triggers.Write{UserID: "u1", Max: map[string]any{"t": before1970}}, nil},
		{"every type", triggers.Write{UserID: "ü-1", Upsert: true,
			Set:         map[string]any{"s": "x", "b": true, "n": nil, "i": 7, "big": 1 << 40, "neg": -1 << 31, "i32": int32(-5), "i64": int64(5), "f": 1.5},
			Max:         map[string]any{"z": int64(1) << 50, "a": -2.25, "m": at},
			SetOnInsert: map[string]any{"createdAt": at, "plan": "free", "score": 0}}, nil},
		{"delete", triggers.Write{UserID: "u1", Delete: true}, nil},
		{"resolved string target", triggers.Write{UserID: "u1", Max: map[string]any{"t": at}}, "first-id"},
		{"resolved raw target", triggers.Write{UserID: "u1", Set: map[string]any{"t": false}}, rawID},
	}
	w := &Writer{field: "uid"}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, m, err := w.model(nil, tc.write, tc.target)
			if err != nil {
				t.Fatal(err)
			}
			wantFilter := bson.D{{Key: "uid", Value: tc.write.UserID}}
			if tc.target != nil {
				wantFilter = bson.D{{Key: "_id", Value: tc.target}, {Key: "uid", Value: tc.write.UserID}}
			}
			var gotFilter, gotUpdate any
			var wantUpdate bson.D
			switch x := m.(type) {
			case *mongo.DeleteManyModel:
				gotFilter = x.Filter
			case *mongo.UpdateOneModel:
				gotFilter, gotUpdate = x.Filter, x.Update
				if x.Upsert == nil || *x.Upsert != tc.write.Upsert {
					t.Fatalf("upsert = %v, want %v", x.Upsert, tc.write.Upsert)
				}
				for _, op := range []struct {
					name   string
					fields map[string]any
				}{{"$set", tc.write.Set}, {"$max", tc.write.Max}, {"$setOnInsert", tc.write.SetOnInsert}} {
					if len(op.fields) == 0 {
						continue
					}
					var sub bson.D
					for _, k := range slices.Sorted(maps.Keys(op.fields)) {
						sub = append(sub, bson.E{Key: k, Value: op.fields[k]})
					}
					wantUpdate = append(wantUpdate, bson.E{Key: op.name, Value: sub})
				}
			}
			mustEqualBSON(t, "filter", gotFilter, wantFilter)
			if wantUpdate != nil {
				mustEqualBSON(t, "update", gotUpdate, wantUpdate)
			}
		})
	}
}

func mustEqualBSON(t *testing.T, what string, got any, want bson.D) {
	t.Helper()
	raw, ok := got.(bson.Raw)
	if !ok {
		t.Fatalf("%s is %T, want bson.Raw", what, got)
	}
	wantRaw, err := bson.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, wantRaw) {
		t.Fatalf("%s = %s\nwant   %s", what, raw, bson.Raw(wantRaw))
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
		elems, err := x.Update.(bson.Raw).Elements()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range elems {
			ops = append(ops, e.Key())
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

// TestEncodeRefusesNULInKeys: a BSON key cannot hold a NUL byte. A write
// whose field name (or the configured user-id field) has one is refused
// with an error, as the driver's bson.Marshal refuses it, never a panic;
// Apply then fails that write as Retry with the error (unreachable through
// the triggers, which refuse control characters, and through Config, which
// validates the user-id field: Apply is exported and must not panic).
func TestEncodeRefusesNULInKeys(t *testing.T) {
	if _, err := bson.Marshal(bson.D{{Key: "a\x00b", Value: 1}}); err == nil {
		t.Fatal("the driver encodes a key with NUL; this test's premise is wrong")
	}
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		name   string
		field  string
		write  triggers.Write
		target any
	}{
		{"$set key", "uid", triggers.Write{UserID: "u1", Set: map[string]any{"a\x00b": "x"}}, nil},
		{"$max key", "uid", triggers.Write{UserID: "u1", Max: map[string]any{"last\x00Login": at}}, nil},
		{"$setOnInsert key", "uid", triggers.Write{UserID: "u1", SetOnInsert: map[string]any{"\x00": 1}}, nil},
		{"key of a resolved-target write", "uid", triggers.Write{UserID: "u1", Set: map[string]any{"a\x00": true}}, "first-id"},
		{"user-id field of an update", "u\x00id", triggers.Write{UserID: "u1", Max: map[string]any{"lastLogin": at}}, nil},
		{"user-id field of a delete", "u\x00id", triggers.Write{UserID: "u1", Delete: true}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := &Writer{field: tc.field}
			buf, m, err := w.model(make([]byte, 3, 64), tc.write, tc.target)
			if !errors.Is(err, ErrKeyHasNUL) {
				t.Fatalf("encoded %v, err %v; want ErrKeyHasNUL", m, err)
			}
			if len(buf) != 3 {
				t.Fatalf("buffer has %d bytes after the failed encoding, want the 3 it had", len(buf))
			}
			if tc.target != nil {
				return
			}
			faults, errs := w.Apply(testsupport.Context(t), []triggers.Write{tc.write})
			if faults[0] != Retry || errs[0] == nil {
				t.Fatalf("Apply = %v, %v; want Retry and an error", faults[0], errs[0])
			}
		})
	}
}
