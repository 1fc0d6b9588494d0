package notify

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
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
		// ownerDoc: an additional document notice for this _id (the
		// owner may have changed and no pre-image names the previous one)
		ownerDoc string
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
			// A replace may change the owner; without a pre-image the
			// previous one is told through the document notice.
			want: want{user: "bob", doc: "doc-1", subject: userSubject("bob"), op: "replace", size: -1, dupUser: "bob", ownerDoc: "doc-1"},
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

		// Owner changes, as a real MongoDB emits them. Pre-images off (the
		// default): updateLookup shows the document as it is now, so
		// only the updateDescription (or the operation, for a replace)
		// tells that the owner may have changed; the document notice then
		// reaches the previous owner's issuer, which indexes its cache by
		// _id. The stand-in cannot produce these events (no
		// updateDescription, replace reported as update, no pre-images),
		// so they are tested here.
		{
			name: "real update moving the document to another user ($set), no pre-image",
			event: `{"_id": ` + tokA + `, "operationType": "update", "clusterTime": ` + ct + `, "wallTime": ` + wall + `,
				"ns": ` + ns + `, "documentKey": {"_id": ` + oid + `},
				"updateDescription": {"updatedFields": {"userId": "bob"}, "removedFields": [], "truncatedArrays": []},
				"fullDocument": {"_id": ` + oid + `, "userId": "bob", "plan": "pro"}}`,
			measure: true,
			want: want{user: "bob", doc: "63f5b0c1a5e4f3b1c7a3d2e1", subject: userSubject("bob"), op: "update",
				changed: []string{"userId"}, size: 52, dupUser: "bob", ownerDoc: "63f5b0c1a5e4f3b1c7a3d2e1"},
		},
		{
			name: "real update removing the user id ($unset): the document notice is the notice",
			event: `{"_id": ` + tokA + `, "operationType": "update", "clusterTime": ` + ct + `, "wallTime": ` + wall + `,
				"ns": ` + ns + `, "documentKey": {"_id": ` + oid + `},
				"updateDescription": {"updatedFields": {}, "removedFields": ["userId"], "truncatedArrays": []},
				"fullDocument": {"_id": ` + oid + `, "plan": "pro"}}`,
			measure: true,
			want: want{doc: "63f5b0c1a5e4f3b1c7a3d2e1", subject: events.DocumentNoticeSubject(prefix, "63f5b0c1a5e4f3b1c7a3d2e1"),
				op: "update", changed: []string{"userId"}, size: 36},
		},
		{
			name: "real update of a path under the user-id field",
			event: `{"_id": ` + tokA + `, "operationType": "update", "clusterTime": ` + ct + `, "ns": ` + ns + `,
				"documentKey": {"_id": "doc-2"},
				"updateDescription": {"updatedFields": {"plan": "pro"}, "removedFields": ["userId.legacy"], "truncatedArrays": []},
				"fullDocument": {"_id": "doc-2", "userId": "carol", "plan": "pro"}}`,
			want: want{user: "carol", doc: "doc-2", subject: userSubject("carol"), op: "update",
				changed: []string{"plan", "userId"}, size: -1, dupUser: "carol", ownerDoc: "doc-2"},
		},
		{
			name: "real update truncating an array at the user-id field",
			event: `{"_id": ` + tokA + `, "operationType": "update", "clusterTime": ` + ct + `, "ns": ` + ns + `,
				"documentKey": {"_id": "doc-3"},
				"updateDescription": {"updatedFields": {}, "removedFields": [], "truncatedArrays": [{"field": "userId", "newSize": 0}]},
				"fullDocument": {"_id": "doc-3", "userId": "dave"}}`,
			want: want{user: "dave", doc: "doc-3", subject: userSubject("dave"), op: "update",
				changed: []string{"userId"}, size: -1, dupUser: "dave", ownerDoc: "doc-3"},
		},
		{
			name: "real update of a field whose name only starts like the user-id field",
			event: `{"_id": ` + tokA + `, "operationType": "update", "clusterTime": ` + ct + `, "ns": ` + ns + `,
				"documentKey": {"_id": "doc-4"},
				"updateDescription": {"updatedFields": {"userIdHistory.0": "x", "userIds": ["y"]}, "removedFields": [], "truncatedArrays": []},
				"fullDocument": {"_id": "doc-4", "userId": "erin"}}`,
			want: want{user: "erin", doc: "doc-4", subject: userSubject("erin"), op: "update",
				changed: []string{"userIdHistory", "userIds"}, size: -1, dupUser: "erin"},
		},
		{
			name: "real replace with a pre-image naming the same user (pre-images on)",
			event: `{"_id": ` + tokA + `, "operationType": "replace", "clusterTime": ` + ct + `, "ns": ` + ns + `,
				"documentKey": {"_id": "doc-1"}, "fullDocument": {"_id": "doc-1", "userId": "bob", "plan": "pro"},
				"fullDocumentBeforeChange": {"_id": "doc-1", "userId": "bob", "plan": "free"}}`,
			want: want{user: "bob", doc: "doc-1", subject: userSubject("bob"), op: "replace", size: -1, dupUser: "bob"},
		},
		{
			name: "real replace moving the document to another user (pre-images on)",
			event: `{"_id": ` + tokA + `, "operationType": "replace", "clusterTime": ` + ct + `, "ns": ` + ns + `,
				"documentKey": {"_id": "doc-1"}, "fullDocument": {"_id": "doc-1", "userId": "bob"},
				"fullDocumentBeforeChange": {"_id": "doc-1", "userId": "alice"}}`,
			want: want{user: "bob", doc: "doc-1", subject: userSubject("bob"), op: "replace", size: -1, dupUser: "bob", extra: []string{"alice"}},
		},
		{
			name: "real update removing the user id with a pre-image (pre-images on): the previous owner is told",
			event: `{"_id": ` + tokA + `, "operationType": "update", "clusterTime": ` + ct + `, "ns": ` + ns + `,
				"documentKey": {"_id": "doc-5"},
				"updateDescription": {"updatedFields": {}, "removedFields": ["userId"]},
				"fullDocument": {"_id": "doc-5"}, "fullDocumentBeforeChange": {"_id": "doc-5", "userId": "alice"}}`,
			want: want{user: "alice", doc: "doc-5", subject: userSubject("alice"), op: "update",
				changed: []string{"userId"}, size: -1, dupUser: "alice"},
		},
		{
			name: "real owner change of a document whose _id is too long for a subject: flush-all",
			event: `{"_id": ` + tokA + `, "operationType": "update", "clusterTime": ` + ct + `, "ns": ` + ns + `,
				"documentKey": {"_id": "` + strings.Repeat("d", 600) + `"},
				"updateDescription": {"updatedFields": {"userId": "bob"}, "removedFields": []},
				"fullDocument": {"userId": "bob"}}`,
			want: want{flush: events.FlushUnattributable, subject: allSubject, op: "update", size: -1, dupUser: "bob"},
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

		{
			// fullDocumentBeforeChange: whenAvailable gives null when the
			// server kept no pre-image (e.g. enabled after the change).
			name: "projected update of the user id, pre-images on but none kept for this change",
			event: `{"_id": ` + tokA + `, "operationType": "update", "clusterTime": ` + ct + `,
				"documentKey": {"_id": ` + oid + `}, "fullDocument": {"_id": ` + oid + `, "userId": "bob"},
				"fullDocumentBeforeChange": null, "updatedFieldNames": ["userId"], "removedFields": [], "truncatedArrays": [],
				"fullDocumentSize": 50}`,
			want: want{user: "bob", doc: "63f5b0c1a5e4f3b1c7a3d2e1", subject: userSubject("bob"), op: "update",
				changed: []string{"userId"}, size: 50, dupUser: "bob", ownerDoc: "63f5b0c1a5e4f3b1c7a3d2e1"},
		},
		{
			name: "projected replace",
			event: `{"_id": ` + tokA + `, "operationType": "replace", "clusterTime": ` + ct + `,
				"documentKey": {"_id": "doc-1"}, "fullDocument": {"_id": "doc-1", "userId": "bob"},
				"updatedFieldNames": null, "fullDocumentSize": 50}`,
			want: want{user: "bob", doc: "doc-1", subject: userSubject("bob"), op: "replace", size: 50, dupUser: "bob", ownerDoc: "doc-1"},
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
			// Reported as an update without updateDescription, so nothing
			// says the owner may have changed: only the new owner is told.
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
			ev := testsupport.ExtJSON(t, tc.event)
			got := m.mapChange(ev)
			w := tc.want
			if got.Operation != w.op || got.Flush != w.flush || got.Invalidate != w.invalid || got.Oversize != w.oversize ||
				got.Size != w.size || got.DuplicateCheckUser != w.dupUser {
				t.Fatalf("got op=%q flush=%q invalidate=%v oversize=%v size=%d dupUser=%q; want %+v",
					got.Operation, got.Flush, got.Invalidate, got.Oversize, got.Size, got.DuplicateCheckUser, w)
			}
			wantNotices := 1 + len(w.extra)
			if w.ownerDoc != "" {
				wantNotices++
			}
			if len(got.Notices) != wantNotices {
				t.Fatalf("got %d notices %+v, want %d", len(got.Notices), got.Notices, wantNotices)
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
			if w.ownerDoc != "" {
				x := got.Notices[len(got.Notices)-1]
				if x.Subject != events.DocumentNoticeSubject(prefix, w.ownerDoc) || x.Notice.Kind != events.NoticeUser ||
					x.Notice.UserID != "" || x.Notice.DocumentID != w.ownerDoc || x.Notice.Operation != w.op ||
					!strings.HasPrefix(x.MsgID, n.MsgID) || x.MsgID == n.MsgID {
					t.Errorf("owner-change notice = %+v on %s (%s), want a document notice for %q with its own msg id",
						x.Notice, x.Subject, x.MsgID, w.ownerDoc)
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
	a1 := m.mapChange(testsupport.ExtJSON(t, `{"_id": `+tokA+`, "operationType": "insert", "documentKey": {"_id": 1}, "fullDocument": {"userId": "x"}}`))
	a2 := m.mapChange(testsupport.ExtJSON(t, `{"_id": `+tokA+`, "operationType": "insert", "documentKey": {"_id": 1}, "fullDocument": {"userId": "x"}, "extra": 1}`))
	b := m.mapChange(testsupport.ExtJSON(t, `{"_id": `+tokB+`, "operationType": "insert", "documentKey": {"_id": 1}, "fullDocument": {"userId": "x"}}`))
	if a1.Notices[0].MsgID != a2.Notices[0].MsgID {
		t.Errorf("same token, different ids: %s %s", a1.Notices[0].MsgID, a2.Notices[0].MsgID)
	}
	if a1.Notices[0].MsgID == b.Notices[0].MsgID {
		t.Errorf("different tokens, same id %s", b.Notices[0].MsgID)
	}
	if !bytes.Equal(a1.Token, testsupport.ExtJSON(t, tokA)) {
		t.Errorf("token = %s", a1.Token)
	}
}
