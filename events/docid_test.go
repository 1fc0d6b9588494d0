package events_test

import (
	"testing"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

func TestDocumentID(t *testing.T) {
	cases := []struct{ doc, want string }{
		{`{"_id": {"$oid": "63f5b0c1a5e4f3b1c7a3d2e1"}}`, "63f5b0c1a5e4f3b1c7a3d2e1"},
		{`{"_id": "plain"}`, "plain"},
		{`{"_id": {"$numberLong": "9007199254740993"}}`, `{"$numberLong":"9007199254740993"}`},
		{`{"_id": {"a": 1}}`, `{"a":{"$numberInt":"1"}}`},
		{`{"_id": {"$binary": {"base64": "AAECAwQFBgcICQoLDA0ODw==", "subType": "04"}}}`, `{"$binary":{"base64":"AAECAwQFBgcICQoLDA0ODw==","subType":"04"}}`},
		{`{"_id": null}`, ""},
		{`{}`, ""},
	}
	for _, tc := range cases {
		if got := events.DocumentID(testsupport.ExtJSON(t, tc.doc).Lookup("_id")); got != tc.want {
			t.Errorf("DocumentID(%s) = %q, want %q", tc.doc, got, tc.want)
		}
	}
}
