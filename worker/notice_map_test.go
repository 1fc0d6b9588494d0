package worker

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
)

// Resume tokens and ids used by the fixtures.
const (
	tokA = `{"_data": "8265A1B2C3000000012B022C0100296E5A10046C1F0D0B36A84D5B8D8B5C6A2B9E8F7146645F696400646563F5B0C1A5E4F3B1C7A3D2E10004"}`
	tokB = `{"_data": "8265A1B2C4000000022B022C0100296E5A10046C1F0D0B36A84D5B8D8B5C6A2B9E8F7146645F696400646563F5B0C1A5E4F3B1C7A3D2E10004"}`
	oid  = `{"$oid": "63f5b0c1a5e4f3b1c7a3d2e1"}`
	ct   = `{"$timestamp": {"t": 1700000000, "i": 7}}`
	wall = `{"$date": "2023-11-14T22:13:20Z"}`
	ns   = `{"db": "app", "coll": "customdata"}`
)

func extJSON(t *testing.T, s string) bson.Raw {
	t.Helper()
	var raw bson.Raw
	if err := bson.UnmarshalExtJSON([]byte(s), false, &raw); err != nil {
		t.Fatalf("fixture %s: %v", s, err)
	}
	return raw
}

func TestNoticeMapChange(t *testing.T) {
	const prefix = "customdata.invalidated"
	type want struct {
		flush    events.FlushReason
		user     string
		doc      string
		subject  string
		op       string
		changed  []string
		oversize bool
		size     int64
		dupUser  string
		extra    []string // users of additional notices
		invalid  bool
	}
	userSubject := func(u string) string { return events.UserNoticeSubject(prefix, u) }
	allSubject := events.FlushAllSubject(prefix)
	cases := []struct {
		name    string
		event   string
		measure bool
		want    want
	}{
		// Events exactly as a real MongoDB (6.0+) emits them, unprojected.
		{
			name: "real insert",
			event: `{"_id": ` + tokA + `, "operationType": "insert", "clusterTime": ` + ct + `, "wallTime": ` + wall + `,
				"fullDocument": {"_id": ` + oid + `, "userId": "alice", "prefs": {"theme": "dark"}},
				"ns": ` + ns + `, "documentKey": {"_id": ` + oid + `}}`,
			measure: true,
			want:    want{user: "alice", doc: "63f5b0c1a5e4f3b1c7a3d2e1", subject: userSubject("alice"), op: "insert", size: 68, dupUser: "alice"},
		},
		{
			name: "real update with updateDescription and looked-up document",
			event: `{"_id": ` + tokA + `, "operationType": "update", "clusterTime": ` + ct + `, "wallTime": ` + wall + `,
				"ns": ` + ns + `, "documentKey": {"_id": ` + oid + `},
				"updateDescription": {"updatedFields": {"prefs.theme": "light", "lastLogin": ` + wall + `, "prefs.lang": "de"},
					"removedFields": ["tmp"], "truncatedArrays": [{"field": "roles", "newSize": 1}]},
				"fullDocument": {"_id": ` + oid + `, "userId": "alice", "prefs": {"theme": "light"}}}`,
			measure: true,
			want: want{user: "alice", doc: "63f5b0c1a5e4f3b1c7a3d2e1", subject: userSubject("alice"), op: "update",
				changed: []string{"lastLogin", "prefs", "roles", "tmp"}, size: 69, dupUser: "alice"},
		},
		{
			name: "real update whose document was deleted before the lookup",
			event: `{"_id": ` + tokA + `, "operationType": "update", "clusterTime": ` + ct + `, "ns": ` + ns + `,
				"documentKey": {"_id": ` + oid + `}, "updateDescription": {"updatedFields": {"a": 1}, "removedFields": []},
				"fullDocument": null}`,
			measure: true,
			want: want{doc: "63f5b0c1a5e4f3b1c7a3d2e1", subject: events.DocumentNoticeSubject(prefix, "63f5b0c1a5e4f3b1c7a3d2e1"),
				op: "update", changed: []string{"a"}, size: -1},
		},
		{
			name: "real replace",
			event: `{"_id": ` + tokA + `, "operationType": "replace", "clusterTime": ` + ct + `, "wallTime": ` + wall + `,
				"ns": ` + ns + `, "documentKey": {"_id": "doc-1"},
				"fullDocument": {"_id": "doc-1", "userId": "bob", "plan": "pro"}}`,
			want: want{user: "bob", doc: "doc-1", subject: userSubject("bob"), op: "replace", size: -1, dupUser: "bob"},
		},
		{
			name: "real delete with fullDocumentBeforeChange",
			event: `{"_id": ` + tokA + `, "operationType": "delete", "clusterTime": ` + ct + `, "wallTime": ` + wall + `,
				"ns": ` + ns + `, "documentKey": {"_id": ` + oid + `},
				"fullDocumentBeforeChange": {"_id": ` + oid + `, "userId": "carol", "x": 1}}`,
			want: want{user: "carol", doc: "63f5b0c1a5e4f3b1c7a3d2e1", subject: userSubject("carol"), op: "delete", size: -1},
		},
		{
			name: "real delete without pre-image",
			event: `{"_id": ` + tokA + `, "operationType": "delete", "clusterTime": ` + ct + `, "wallTime": ` + wall + `,
				"ns": ` + ns + `, "documentKey": {"_id": ` + oid + `}}`,
			want: want{doc: "63f5b0c1a5e4f3b1c7a3d2e1", subject: events.DocumentNoticeSubject(prefix, "63f5b0c1a5e4f3b1c7a3d2e1"), op: "delete", size: -1},
		},
		{
			name: "real delete on a collection sharded by user id",
			event: `{"_id": ` + tokA + `, "operationType": "delete", "clusterTime": ` + ct + `, "ns": ` + ns + `,
				"documentKey": {"userId": "dave", "_id": ` + oid + `}}`,
			want: want{user: "dave", doc: "63f5b0c1a5e4f3b1c7a3d2e1", subject: userSubject("dave"), op: "delete", size: -1},
		},
		{
			name:  "real drop",
			event: `{"_id": ` + tokA + `, "operationType": "drop", "clusterTime": ` + ct + `, "wallTime": ` + wall + `, "ns": ` + ns + `}`,
			want:  want{flush: events.FlushCollectionGone, subject: allSubject, op: "drop", size: -1},
		},
		{
			name: "real rename",
			event: `{"_id": ` + tokA + `, "operationType": "rename", "clusterTime": ` + ct + `, "wallTime": ` + wall + `,
				"ns": ` + ns + `, "to": {"db": "app", "coll": "customdata_old"}}`,
			want: want{flush: events.FlushCollectionGone, subject: allSubject, op: "rename", size: -1},
		},
		{
			name:  "real dropDatabase",
			event: `{"_id": ` + tokA + `, "operationType": "dropDatabase", "clusterTime": ` + ct + `, "wallTime": ` + wall + `, "ns": {"db": "app"}}`,
			want:  want{flush: events.FlushCollectionGone, subject: allSubject, op: "dropDatabase", size: -1},
		},
		{
			name:  "real invalidate",
			event: `{"_id": ` + tokA + `, "operationType": "invalidate", "clusterTime": ` + ct + `, "wallTime": ` + wall + `}`,
			want:  want{flush: events.FlushInvalidated, subject: allSubject, op: "invalidate", size: -1, invalid: true},
		},

		// Events as the notifier's $project leaves them on a real server.
		{
			name: "projected update",
			event: `{"_id": ` + tokA + `, "operationType": "update", "clusterTime": ` + ct + `, "ns": ` + ns + `,
				"documentKey": {"_id": ` + oid + `}, "fullDocument": {"userId": "alice"},
				"updatedFieldNames": ["prefs.theme", "a"], "removedFields": ["b.c"], "truncatedArrays": [], "fullDocumentSize": 20000}`,
			want: want{user: "alice", doc: "63f5b0c1a5e4f3b1c7a3d2e1", subject: userSubject("alice"), op: "update",
				changed: []string{"a", "b", "prefs"}, oversize: true, size: 20000, dupUser: "alice"},
		},
		{
			name: "projected update with nothing reported",
			event: `{"_id": ` + tokA + `, "operationType": "update", "clusterTime": ` + ct + `,
				"documentKey": {"_id": ` + oid + `}, "fullDocument": {"userId": "alice"}, "updatedFieldNames": null, "fullDocumentSize": 100}`,
			want: want{user: "alice", doc: "63f5b0c1a5e4f3b1c7a3d2e1", subject: userSubject("alice"), op: "update", size: 100, dupUser: "alice"},
		},
		{
			name: "projected update moving the document to another user (pre-images on)",
			event: `{"_id": ` + tokA + `, "operationType": "update", "clusterTime": ` + ct + `,
				"documentKey": {"_id": ` + oid + `}, "fullDocument": {"userId": "alice"}, "fullDocumentBeforeChange": {"userId": "bob"},
				"updatedFieldNames": ["userId"], "fullDocumentSize": 50}`,
			want: want{user: "alice", doc: "63f5b0c1a5e4f3b1c7a3d2e1", subject: userSubject("alice"), op: "update",
				changed: []string{"userId"}, size: 50, dupUser: "alice", extra: []string{"bob"}},
		},

		// Events exactly as the mongo-java-server stand-in emits them
		// through the notifier's $project: update events carry the update
		// spec as documentKey and lose fullDocument; a replaceOne is an
		// "update" whose documentKey is the whole new document.
		{
			name: "stand-in insert",
			event: `{"_id": {"_data": "6b071b8300000002"}, "operationType": "insert", "documentKey": {"_id": "s1"},
				"clusterTime": {"$timestamp": {"t": 1795627907, "i": 2}}, "fullDocument": {"userId": "u1"}, "updatedFieldNames": null}`,
			measure: true,
			want:    want{user: "u1", doc: "s1", subject: userSubject("u1"), op: "insert", size: 20, dupUser: "u1"},
		},
		{
			name: "stand-in update: neither user nor _id",
			event: `{"_id": {"_data": "6b071b8300000003"}, "operationType": "update", "documentKey": {"$set": {"a": 2}},
				"clusterTime": {"$timestamp": {"t": 1795627907, "i": 3}}, "updatedFieldNames": null}`,
			measure: true,
			want:    want{flush: events.FlushUnattributable, subject: allSubject, op: "update", size: -1},
		},
		{
			name: "stand-in update with the looked-up document (whole fullDocument kept)",
			event: `{"_id": {"_data": "6b071abb00000005"}, "operationType": "update",
				"fullDocument": {"a": 2, "_id": "s1", "userId": "u1"}, "documentKey": {"$set": {"a": 2}, "$unset": {"b": ""}},
				"clusterTime": {"$timestamp": {"t": 1795627707, "i": 5}}}`,
			measure: true,
			want:    want{user: "u1", doc: "s1", subject: userSubject("u1"), op: "update", size: 39, dupUser: "u1"},
		},
		{
			name: "stand-in update with the delta as fullDocument",
			event: `{"_id": {"_data": "6b071b8300000003"}, "operationType": "update", "documentKey": {"$set": {"a": 2}, "$unset": {"b": ""}},
				"clusterTime": {"$timestamp": {"t": 1795627907, "i": 3}}, "fullDocument": {"a": 2, "b": ""}}`,
			measure: true,
			want:    want{flush: events.FlushUnattributable, subject: allSubject, op: "update", size: 20},
		},
		{
			name: "stand-in replace",
			event: `{"_id": {"_data": "6b071b8300000006"}, "operationType": "update",
				"documentKey": {"userId": "u2", "c": 3, "_id": ` + oid + `},
				"clusterTime": {"$timestamp": {"t": 1795627907, "i": 6}}, "updatedFieldNames": null}`,
			measure: true,
			want:    want{user: "u2", doc: "63f5b0c1a5e4f3b1c7a3d2e1", subject: userSubject("u2"), op: "update", size: -1, dupUser: "u2"},
		},
		{
			name: "stand-in delete",
			event: `{"_id": {"_data": "6b071b8300000008"}, "operationType": "delete", "fullDocument": null,
				"documentKey": {"_id": ` + oid + `}, "clusterTime": {"$timestamp": {"t": 1795627907, "i": 8}}}`,
			want: want{doc: "63f5b0c1a5e4f3b1c7a3d2e1", subject: events.DocumentNoticeSubject(prefix, "63f5b0c1a5e4f3b1c7a3d2e1"), op: "delete", size: -1},
		},
		{
			name:  "stand-in drop",
			event: `{"_id": {"_data": "6b071b8300000009"}, "operationType": "drop", "clusterTime": {"$timestamp": {"t": 1795627907, "i": 9}}, "updatedFieldNames": null}`,
			want:  want{flush: events.FlushCollectionGone, subject: allSubject, op: "drop", size: -1},
		},

		// Edge cases.
		{
			name:  "integer _id renders as canonical extended JSON",
			event: `{"_id": ` + tokA + `, "operationType": "delete", "clusterTime": ` + ct + `, "documentKey": {"_id": 7}}`,
			want:  want{doc: `{"$numberInt":"7"}`, subject: events.DocumentNoticeSubject(prefix, `{"$numberInt":"7"}`), op: "delete", size: -1},
		},
		{
			name: "non-string user id is not a user id",
			event: `{"_id": ` + tokA + `, "operationType": "insert", "clusterTime": ` + ct + `,
				"documentKey": {"_id": "d"}, "fullDocument": {"userId": 42}, "fullDocumentSize": 10}`,
			want: want{doc: "d", subject: events.DocumentNoticeSubject(prefix, "d"), op: "insert", size: 10},
		},
		{
			name:  "unknown operation type flushes",
			event: `{"_id": ` + tokA + `, "operationType": "shardCollection", "clusterTime": ` + ct + `}`,
			want:  want{flush: events.FlushUnattributable, subject: allSubject, op: "shardCollection", size: -1},
		},
		{
			name: "too many changed fields for a message: the notice lists none (all may have changed)",
			event: `{"_id": ` + tokA + `, "operationType": "update", "documentKey": {"_id": "d"}, "fullDocument": {"userId": "u"},
				"fullDocumentSize": 10, "updatedFieldNames": ["` + strings.Repeat("f", 20000) + `", "g"]}`,
			want: want{user: "u", doc: "d", subject: userSubject("u"), op: "update", size: 10, dupUser: "u"},
		},
		{
			// NATS closes the connection on a control line over 4 KiB.
			name: "user id too long for a subject: the notice names the document",
			event: `{"_id": ` + tokA + `, "operationType": "insert", "documentKey": {"_id": "d"},
				"fullDocument": {"userId": "` + strings.Repeat("u", 5000) + `"}, "fullDocumentSize": 10}`,
			want: want{doc: "d", subject: events.DocumentNoticeSubject(prefix, "d"), op: "insert", size: 10},
		},
		{
			name:  "user and document ids too long for a subject: flush-all",
			event: `{"_id": ` + tokA + `, "operationType": "delete", "documentKey": {"_id": "` + strings.Repeat("d", 5000) + `", "userId": "` + strings.Repeat("u", 5000) + `"}}`,
			want:  want{flush: events.FlushUnattributable, subject: allSubject, op: "delete", size: -1},
		},
		{
			name:  "size at the limit is not oversize",
			event: `{"_id": ` + tokA + `, "operationType": "insert", "documentKey": {"_id": "d"}, "fullDocument": {"userId": "u"}, "fullDocumentSize": 16384}`,
			want:  want{user: "u", doc: "d", subject: userSubject("u"), op: "insert", size: 16384, dupUser: "u"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := noticeMapper{prefix: prefix, userIDField: "userId", oversizeBytes: 16384, measureFullDocument: tc.measure}
			ev := extJSON(t, tc.event)
			got := m.mapChange(ev)
			w := tc.want
			if got.Operation != w.op || got.Flush != w.flush || got.Invalidate != w.invalid || got.Oversize != w.oversize ||
				got.Size != w.size || got.DuplicateCheckUser != w.dupUser {
				t.Fatalf("got op=%q flush=%q invalidate=%v oversize=%v size=%d dupUser=%q; want %+v",
					got.Operation, got.Flush, got.Invalidate, got.Oversize, got.Size, got.DuplicateCheckUser, w)
			}
			if len(got.Notices) != 1+len(w.extra) {
				t.Fatalf("got %d notices, want %d", len(got.Notices), 1+len(w.extra))
			}
			n := got.Notices[0]
			for _, p := range got.Notices {
				if len(p.Subject) > 1024 {
					t.Errorf("subject of %d bytes; NATS refuses control lines over 4 KiB", len(p.Subject))
				}
			}
			if n.Subject != w.subject {
				t.Errorf("subject = %q, want %q", n.Subject, w.subject)
			}
			if !strings.HasPrefix(n.MsgID, "cd-") || len(n.MsgID) != 35 {
				t.Errorf("msg id = %q, want cd- and 32 hex digits", n.MsgID)
			}
			wantKind := events.NoticeUser
			if w.flush != "" {
				wantKind = events.NoticeFlushAll
			}
			if n.Notice.Kind != wantKind || n.Notice.UserID != w.user || n.Notice.DocumentID != w.doc ||
				n.Notice.Operation != w.op || n.Notice.Reason != w.flush || n.Notice.Oversize != w.oversize ||
				n.Notice.SchemaVersion != events.NoticeSchemaVersion {
				t.Errorf("notice = %+v, want kind %s user %q doc %q op %q reason %q oversize %v", n.Notice, wantKind, w.user, w.doc, w.op, w.flush, w.oversize)
			}
			if !slices.Equal(n.Notice.ChangedFields, w.changed) {
				t.Errorf("changed fields = %q, want %q", n.Notice.ChangedFields, w.changed)
			}
			if ctv, _, ok := ev.Lookup("clusterTime").TimestampOK(); ok && (n.Notice.ClusterTime == nil || n.Notice.ClusterTime.T != ctv) {
				t.Errorf("cluster time = %+v, want t=%d", n.Notice.ClusterTime, ctv)
			}
			for i, u := range w.extra {
				x := got.Notices[1+i]
				if x.Notice.UserID != u || x.Subject != userSubject(u) || x.MsgID == n.MsgID {
					t.Errorf("extra notice %d = %+v on %s (%s), want user %q with its own msg id", i, x.Notice, x.Subject, x.MsgID, u)
				}
			}
			// The wire form must be what issuers accept.
			for _, p := range got.Notices {
				if err := roundTripNotice(p.Notice); err != nil {
					t.Errorf("notice does not decode: %v", err)
				}
			}
		})
	}
}

func TestNoticeMsgIDIsDerivedFromTheResumeToken(t *testing.T) {
	m := noticeMapper{prefix: "p", userIDField: "userId"}
	a1 := m.mapChange(extJSON(t, `{"_id": `+tokA+`, "operationType": "insert", "documentKey": {"_id": 1}, "fullDocument": {"userId": "x"}}`))
	a2 := m.mapChange(extJSON(t, `{"_id": `+tokA+`, "operationType": "insert", "documentKey": {"_id": 1}, "fullDocument": {"userId": "x"}, "extra": 1}`))
	b := m.mapChange(extJSON(t, `{"_id": `+tokB+`, "operationType": "insert", "documentKey": {"_id": 1}, "fullDocument": {"userId": "x"}}`))
	if a1.Notices[0].MsgID != a2.Notices[0].MsgID {
		t.Errorf("same token, different ids: %s %s", a1.Notices[0].MsgID, a2.Notices[0].MsgID)
	}
	if a1.Notices[0].MsgID == b.Notices[0].MsgID {
		t.Errorf("different tokens, same id %s", b.Notices[0].MsgID)
	}
	if !bytes.Equal(a1.Token, extJSON(t, tokA)) {
		t.Errorf("token = %s", a1.Token)
	}
}

func TestDocumentIDString(t *testing.T) {
	cases := []struct{ doc, want string }{
		{`{"_id": ` + oid + `}`, "63f5b0c1a5e4f3b1c7a3d2e1"},
		{`{"_id": "plain"}`, "plain"},
		{`{"_id": {"$numberLong": "9007199254740993"}}`, `{"$numberLong":"9007199254740993"}`},
		{`{"_id": {"a": 1}}`, `{"a":{"$numberInt":"1"}}`},
		{`{"_id": {"$binary": {"base64": "AAECAwQFBgcICQoLDA0ODw==", "subType": "04"}}}`, `{"$binary":{"base64":"AAECAwQFBgcICQoLDA0ODw==","subType":"04"}}`},
		{`{"_id": null}`, ""},
		{`{}`, ""},
	}
	for _, tc := range cases {
		if got := documentIDString(extJSON(t, tc.doc).Lookup("_id")); got != tc.want {
			t.Errorf("documentIDString(%s) = %q, want %q", tc.doc, got, tc.want)
		}
	}
}
