package issuer

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
)

// Document ids must render exactly as the worker renders them in notices
// (README "Notice contract"), or doc.<token> notices would miss entries.
func TestDocumentIDRendersLikeNotices(t *testing.T) {
	oid, _ := bson.ObjectIDFromHex("621b2886c971ec914881d99a")
	for _, tc := range []struct {
		id   any
		want string
	}{
		{oid, "621b2886c971ec914881d99a"},
		{"ada@example.com", "ada@example.com"},
		{int32(42), `{"$numberInt":"42"}`},
		{int64(42), `{"$numberLong":"42"}`},
		{bson.D{{Key: "a", Value: int32(1)}}, `{"a":{"$numberInt":"1"}}`},
	} {
		raw, err := bson.Marshal(bson.D{{Key: "_id", Value: tc.id}})
		if err != nil {
			t.Fatal(err)
		}
		if got := events.DocumentID(bson.Raw(raw).Lookup("_id")); got != tc.want {
			t.Errorf("_id %#v renders %q, want %q", tc.id, got, tc.want)
		}
	}
	if got := events.DocumentID(bson.RawValue{}); got != "" {
		t.Errorf("missing _id renders %q", got)
	}
}

// Raw and JSON are shared by every caller of a cached value: one caller
// appending to its slice must never write into what another caller sees.
func TestSharedSlicesSurviveAppend(t *testing.T) {
	doc, err := bson.Marshal(bson.D{{Key: "_id", Value: "d1"}, {Key: "userId", Value: "ada"}, {Key: "plan", Value: "pro"}})
	if err != nil {
		t.Fatal(err)
	}
	roomy := make([]byte, len(doc), len(doc)+256) // as bytes.Clone may round up
	copy(roomy, doc)
	d, err := newData(roomy, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	for name, view := range map[string]func() []byte{
		"Raw":  func() []byte { return d.Raw() },
		"JSON": func() []byte { return d.JSON() },
	} {
		a := append(view(), 'A')
		b := append(view(), 'B')
		if a[len(a)-1] != 'A' || b[len(b)-1] != 'B' {
			t.Errorf("%s: two callers appending wrote into each other's result", name)
		}
		if v := view(); len(v) != cap(v) {
			t.Errorf("%s: len %d cap %d: spare capacity is shared", name, len(v), cap(v))
		}
	}
}
