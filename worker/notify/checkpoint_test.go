package notify

import (
	"bytes"
	"errors"
	"regexp"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

func TestCheckpointStoreRoundTrip(t *testing.T) {
	ns := testsupport.StartNATS(t)
	_, js := ns.Connect(t)
	ctx := testsupport.Context(t)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "CP_TEST"})
	if err != nil {
		t.Fatal(err)
	}
	s := newCheckpointStore(kv, kvKeyForNamespace("app", "custom data"), "app", "custom data")

	if _, found, err := s.load(ctx); found || err != nil {
		t.Fatalf("empty store: found %v, err %v", found, err)
	}
	tok, _ := bson.Marshal(bson.M{"_data": "8265A1B2C3000000012B"})
	want := checkpoint{Token: tok, StartAfter: true, ClusterTime: &events.ClusterTime{T: 5, I: 6}, Instance: "i"}
	if err := s.save(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, found, err := s.load(ctx)
	if err != nil || !found {
		t.Fatalf("load: found %v, err %v", found, err)
	}
	if !bytes.Equal(got.Token, tok) || !got.StartAfter || *got.ClusterTime != *want.ClusterTime || got.Namespace != "app.custom data" {
		t.Fatalf("loaded %+v, want %+v", got, want)
	}

	// Another collection's store does not see it.
	other := newCheckpointStore(kv, kvKeyForNamespace("app", "other"), "app", "other")
	if _, found, err := other.load(ctx); found || err != nil {
		t.Fatalf("other collection: found %v, err %v", found, err)
	}
}

func TestDecodeCheckpointRejectsWhatItCannotUse(t *testing.T) {
	tok, _ := bson.Marshal(bson.M{"_data": "x"})
	good := `{"v":1,"token":"` + bsonBase64(tok) + `","ns":"db.c"}`
	if _, err := decodeCheckpoint([]byte(good), "db.c"); err != nil {
		t.Fatalf("good checkpoint: %v", err)
	}
	for name, data := range map[string]string{
		"not json":        "garbage",
		"empty":           "",
		"future version":  `{"v":2,"token":"` + bsonBase64(tok) + `","ns":"db.c"}`,
		"other namespace": `{"v":1,"token":"` + bsonBase64(tok) + `","ns":"db.other"}`,
		"no token":        `{"v":1,"ns":"db.c"}`,
		"token not bson":  `{"v":1,"token":"AAEC","ns":"db.c"}`,
		"token not b64":   `{"v":1,"token":"!!","ns":"db.c"}`,
	} {
		if _, err := decodeCheckpoint([]byte(data), "db.c"); !errors.Is(err, errCheckpointUnusable) {
			t.Errorf("%s: err = %v, want errCheckpointUnusable", name, err)
		}
	}
}

// validKVKey is what nats.go accepts as a key.
var validKVKey = regexp.MustCompile(`^[-/_=a-zA-Z0-9]+(\.[-/_=a-zA-Z0-9]+)*$`)

func TestKVKeyForNamespace(t *testing.T) {
	seen := map[string]string{}
	for _, tc := range []struct{ db, coll, want string }{
		{"app", "customdata", "app.customdata"},
		{"app-1", "custom_data", "app-1.custom_data"},
		{"app", "custom.data", ""},
		{"app.custom", "data", ""},
		{"app", "custom data", ""},
		{"app", "données", ""},
	} {
		got := kvKeyForNamespace(tc.db, tc.coll)
		if tc.want != "" && got != tc.want {
			t.Errorf("key(%q, %q) = %q, want %q", tc.db, tc.coll, got, tc.want)
		}
		if !validKVKey.MatchString(got) {
			t.Errorf("key(%q, %q) = %q is not a valid KV key", tc.db, tc.coll, got)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("key(%q, %q) = %q collides with %s", tc.db, tc.coll, got, prev)
		}
		seen[got] = tc.db + "/" + tc.coll
	}
}
