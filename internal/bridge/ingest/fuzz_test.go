package ingest

import (
	"testing"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/bridge/webhook"
)

// FuzzMapping: whatever an authenticated sender posts, the mapping of
// every source never panics and turns each body (or batch element) into
// exactly one of an event with an id JetStream takes and a user, an
// ignored log type, or a dead letter with a reason that is a subject
// token. The seeds are the documented fixtures.
func FuzzMapping(f *testing.F) {
	for _, name := range []string{"clerk/user-created.json", "clerk/user-deleted.json", "clerk/session-created.json", "auth0/log-stream-batch.json"} {
		f.Add(fixture(f, name))
	}
	f.Add([]byte(`{"identity_id":"3a5293f1","flow_id":"5c0e9e2a","method":"password","time":"2023-02-01T08:00:04.512Z"}`))
	f.Add([]byte(`[{"data":{"type":"s"}},1,null]`))
	f.Add([]byte("{\"log_id\":\"a\",\"data\":{\"type\":\"s\",\"user_id\":\"u\"}}\n{\"log_id\":\n{}\r\n"))
	now := time.Date(2026, 5, 12, 9, 30, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		items := []item{
			clerkItem(body, webhook.Delivery{ID: "msg_fuzz", Timestamp: now}),
			kratosItem(events.OperationCreate, body, now),
			kratosItem(events.OperationLogin, body, now),
		}
		items = append(items, auth0Items(body, now)...)
		for _, it := range items {
			switch {
			case it.mapped:
				if it.ignored || it.reason != "" || !events.ValidEventID(it.ev.ID) || it.ev.User.ID == "" ||
					!it.ev.OperationType.Valid() || len(it.ev.Providers) != 1 || !events.ValidProvider(it.ev.Providers[0]) {
					t.Fatalf("mapped item %+v", it)
				}
			case it.ignored:
				if it.reason != "" {
					t.Fatalf("ignored item with a reason: %+v", it)
				}
			default:
				if !subjectToken(string(it.reason)) || it.detail == "" {
					t.Fatalf("unmappable item without a usable reason: %+v", it)
				}
			}
		}
	})
}
