package notify

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

// TestNoticeMapperIgnoresOnlyWhatItCanClassify: with lastLogin ignored,
// an update that by its updateDescription changed only lastLogin publishes
// nothing; every change the notifier cannot classify is announced. Events
// are shaped as MongoDB 6.0+ emits them (change events reference,
// "update Event" and "replace Event").
func TestNoticeMapperIgnoresOnlyWhatItCanClassify(t *testing.T) {
	const update = `"operationType": "update", "clusterTime": ` + ct + `, "ns": ` + ns + `, "documentKey": {"_id": ` + oid + `},
		"fullDocument": {"_id": ` + oid + `, "userId": "alice", "lastLogin": ` + wall + `}`
	cases := []struct {
		name    string
		event   string
		ignore  []string
		ignored bool
	}{
		{"only lastLogin set", `{"_id": ` + tokA + `, ` + update + `,
			"updateDescription": {"updatedFields": {"lastLogin": ` + wall + `}, "removedFields": [], "truncatedArrays": []}}`,
			[]string{"lastLogin"}, true},
		// A dotted path may be a nested path or one field whose name holds
		// a dot ("update Event", Path Disambiguation): only
		// disambiguatedPaths tells, so without it the change is announced.
		{"a dotted path, not disambiguated", `{"_id": ` + tokA + `, ` + update + `,
			"updateDescription": {"updatedFields": {"stats.logins": 3}, "removedFields": ["stats.tmp"]}}`,
			[]string{"lastLogin", "stats"}, false},
		{"paths under an ignored field, disambiguated", `{"_id": ` + tokA + `, ` + update + `,
			"updateDescription": {"updatedFields": {"stats.logins": 3}, "removedFields": ["stats.tmp"],
			"disambiguatedPaths": {"stats.logins": ["stats", "logins"], "stats.tmp": ["stats", "tmp"]}}}`,
			[]string{"lastLogin", "stats"}, true},
		{"a top-level field named lastLogin.sub", `{"_id": ` + tokA + `, ` + update + `,
			"updateDescription": {"updatedFields": {"lastLogin.sub": 2}, "removedFields": [],
			"disambiguatedPaths": {"lastLogin.sub": ["lastLogin.sub"]}}}`,
			[]string{"lastLogin"}, false},
		{"projected form: disambiguated array element", `{"_id": ` + tokA + `, ` + update + `, "fullDocumentSize": 40,
			"updatedFieldNames": ["lastLogin", "stats.0"], "disambiguatedPaths": {"stats.0": ["stats", {"$numberInt": "0"}]}}`,
			[]string{"lastLogin", "stats"}, true},
		{"projected form: updatedFieldNames", `{"_id": ` + tokA + `, ` + update + `, "fullDocumentSize": 40, "updatedFieldNames": ["lastLogin"]}`,
			[]string{"lastLogin"}, true},
		{"lastLogin and a carried field", `{"_id": ` + tokA + `, ` + update + `,
			"updateDescription": {"updatedFields": {"lastLogin": ` + wall + `, "plan": "pro"}, "removedFields": []}}`,
			[]string{"lastLogin"}, false},
		{"ignored field removed and another truncated", `{"_id": ` + tokA + `, ` + update + `,
			"updateDescription": {"updatedFields": {}, "removedFields": ["lastLogin"], "truncatedArrays": [{"field": "roles", "newSize": 1}]}}`,
			[]string{"lastLogin"}, false},
		{"nothing ignored by default", `{"_id": ` + tokA + `, ` + update + `,
			"updateDescription": {"updatedFields": {"lastLogin": ` + wall + `}, "removedFields": []}}`,
			nil, false},
		{"no updateDescription (as on the stand-in)", `{"_id": ` + tokA + `, ` + update + `}`,
			[]string{"lastLogin"}, false},
		{"replace", `{"_id": ` + tokA + `, "operationType": "replace", "clusterTime": ` + ct + `, "ns": ` + ns + `,
			"documentKey": {"_id": ` + oid + `}, "fullDocument": {"_id": ` + oid + `, "userId": "alice", "lastLogin": ` + wall + `}}`,
			[]string{"lastLogin"}, false},
		{"insert", `{"_id": ` + tokA + `, "operationType": "insert", "clusterTime": ` + ct + `, "ns": ` + ns + `,
			"documentKey": {"_id": ` + oid + `}, "fullDocument": {"_id": ` + oid + `, "userId": "alice", "lastLogin": ` + wall + `}}`,
			[]string{"lastLogin"}, false},
		{"delete", `{"_id": ` + tokA + `, "operationType": "delete", "clusterTime": ` + ct + `, "ns": ` + ns + `,
			"documentKey": {"_id": ` + oid + `}}`,
			[]string{"lastLogin"}, false},
		{"ignored field on an oversize document", `{"_id": ` + tokA + `, ` + update + `, "fullDocumentSize": 20000, "updatedFieldNames": ["lastLogin"]}`,
			[]string{"lastLogin"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := noticeMapper{prefix: events.DefaultNoticePrefix, userIDField: "userId", oversizeBytes: 16384,
				measureFullDocument: true, ignoreFields: tc.ignore}
			got := m.mapChange(testsupport.ExtJSON(t, tc.event))
			if got.Ignored != tc.ignored {
				t.Fatalf("ignored = %v, want %v (notices %+v)", got.Ignored, tc.ignored, got.Notices)
			}
			if tc.ignored && len(got.Notices) != 0 {
				t.Errorf("an ignored change published %+v", got.Notices)
			}
			if !tc.ignored && len(got.Notices) == 0 {
				t.Error("an announced change has no notice")
			}
			if tc.ignored && got.Token == nil {
				t.Error("an ignored change lost its resume token: its position could not be checkpointed")
			}
		})
	}
}

func TestIgnoreFieldsValidation(t *testing.T) {
	data := customdata.Config{UserIDField: "uid"}
	for _, tc := range []struct {
		fields []string
		ok     bool
	}{
		{[]string{"lastLogin"}, true},
		{[]string{"lastLogin", "stats"}, true},
		{[]string{"uid"}, false},
		{[]string{"a.b"}, false},
		{[]string{"$set"}, false},
		{[]string{""}, false},
		{[]string{"_id"}, false},
	} {
		c := Config{IgnoreFields: tc.fields}
		err := errors.Join(c.Validate(), c.ValidateWithData(data))
		if (err == nil) != tc.ok {
			t.Errorf("IgnoreFields %q: err = %v, want ok=%v", tc.fields, err, tc.ok)
		}
	}
}

// scriptedFeed is a change stream that yields the given events (shaped as
// real MongoDB emits them, with updateDescription, which the stand-in
// lacks) on its first open, then stays idle.
type scriptedFeed struct {
	mu     sync.Mutex
	events []bson.Raw
	opened bool
}

func (s *scriptedFeed) open(context.Context, mongo.Pipeline, *checkpoint, *options.ChangeStreamOptionsBuilder) (feedCursor, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opened {
		return &scriptedCursor{}, nil
	}
	s.opened = true
	return &scriptedCursor{events: slices.Clone(s.events)}, nil
}

type scriptedCursor struct {
	events []bson.Raw
	cur    bson.Raw
	last   bson.Raw
}

func (c *scriptedCursor) TryNext(context.Context) bool {
	if len(c.events) == 0 {
		return false
	}
	c.cur, c.events = c.events[0], c.events[1:]
	c.last, _ = c.cur.Lookup("_id").DocumentOK()
	return true
}
func (c *scriptedCursor) Event() bson.Raw             { return c.cur }
func (c *scriptedCursor) Err() error                  { return nil }
func (c *scriptedCursor) ResumeToken() bson.Raw       { return c.last }
func (c *scriptedCursor) RemainingBatchLength() int   { return len(c.events) }
func (c *scriptedCursor) Close(context.Context) error { return nil }

// TestNotifierIgnoresLoginOnlyUpdates: an issuer following notices hears of
// bob's plan change but not of alice's or carol's lastLogin writes, and the
// notifier still checkpoints past the last (ignored) change, so a restart
// does not replay it.
func TestNotifierIgnoresLoginOnlyUpdates(t *testing.T) {
	e := newNotifierEnv(t)
	loginOnly := func(tok, user string, i int) string {
		return `{"_id": {"_data": "` + tok + `"}, "operationType": "update", "clusterTime": {"$timestamp": {"t": 1700000000, "i": ` +
			strconv.Itoa(i) + `}}, "ns": ` + ns + `, "documentKey": {"_id": "` + user + `-doc"},
			"updateDescription": {"updatedFields": {"lastLogin": ` + wall + `}, "removedFields": [], "truncatedArrays": []}}`
	}
	feed := &scriptedFeed{events: []bson.Raw{
		testsupport.ExtJSON(t, loginOnly("826A01", "alice", 1)),
		testsupport.ExtJSON(t, `{"_id": {"_data": "826A02"}, "operationType": "update", "clusterTime": {"$timestamp": {"t": 1700000000, "i": 2}},
			"ns": `+ns+`, "documentKey": {"_id": "bob-doc"}, "fullDocument": {"_id": "bob-doc", "userId": "bob", "plan": "pro"},
			"updateDescription": {"updatedFields": {"plan": "pro", "lastLogin": `+wall+`}, "removedFields": []}}`),
		testsupport.ExtJSON(t, loginOnly("826A03", "carol", 3)),
	}}
	e.provision()
	n := e.run(e.db, feed, false, func(c *Config) { c.IgnoreFields = []string{"lastLogin"} })
	r := e.readNotices()
	got := r.until("bob's notice", isUser("bob", "update"))
	for _, rn := range got {
		if rn.DocumentID == "alice-doc" || rn.DocumentID == "carol-doc" {
			t.Errorf("a lastLogin-only change was announced: %v", rn)
		}
	}
	if !slices.Equal(got[len(got)-1].ChangedFields, []string{"lastLogin", "plan"}) {
		t.Errorf("bob's notice lists %v, want [lastLogin plan]", got[len(got)-1].ChangedFields)
	}
	e.waitCheckpoint(&events.ClusterTime{T: 1700000000, I: 3})
	if v := metricValue(n.metrics.ignored); v != 2 {
		t.Errorf("changes_ignored_total = %v, want 2", v)
	}
	r.quiet(500 * time.Millisecond)
}
