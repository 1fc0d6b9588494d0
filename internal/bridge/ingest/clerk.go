package ingest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/bridge/webhook"
)

// ProviderClerk is the provider of every event from Clerk: its webhooks
// do not say which method a user signed up or in with.
const ProviderClerk = "clerk"

// clerkEvent is a Clerk webhook's payload
// (https://clerk.com/docs/guides/development/webhooks/overview, "Payload
// structure"): the event type, the object it is about in data (the User
// object for user.*, a Session for session.*, a deleted object for
// user.deleted), and when it occurred. Only what the mapping uses is
// decoded.
type clerkEvent struct {
	Type string `json:"type"`
	Data *struct {
		ID     string `json:"id"`
		UserID string `json:"user_id"`
	} `json:"data"`
	// Timestamp is documented as milliseconds; Clerk's own webhook
	// OpenAPI examples give seconds. clerkTime tells them apart.
	Timestamp json.Number `json:"timestamp"`
}

// clerkOperations maps the event types the bridge takes.
var clerkOperations = map[string]events.Operation{
	"user.created":    events.OperationCreate,
	"user.deleted":    events.OperationDelete,
	"session.created": events.OperationLogin,
}

// serveClerk takes Clerk's webhooks (POST /ingest/clerk): verified as
// Svix signs them, then mapped and published.
func (s *Server) serveClerk(w http.ResponseWriter, r *http.Request) string {
	body, ok := s.body(w, r, sourceClerk, false)
	if !ok {
		return requestTooLarge
	}
	d, err := s.clerk.VerifyDelivery(r.Header, body)
	if err != nil {
		return s.unauthorized(w, sourceClerk, "webhook signature not verified", err)
	}
	return s.deliver(w, r, sourceClerk, []item{clerkItem(body, d)})
}

// clerkItem maps one verified Clerk delivery. The event's id is
// "clerk:<svix-id>": Svix keeps the message id when it sends the message
// again, and so does a replay from Clerk's dashboard.
func clerkItem(body []byte, d webhook.Delivery) item {
	var e clerkEvent
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&e); err != nil || e.Data == nil {
		return unmappable(events.ReasonMalformedJSON, body, d.ID, "the body is not a Clerk event (a JSON object with type and data)")
	}
	op, ok := clerkOperations[e.Type]
	if !ok {
		return unmappable(events.ReasonUnknownOperation, body, d.ID,
			"event type %s is not one the bridge maps (user.created, user.deleted, session.created): subscribe the endpoint to those only", typeName(e.Type))
	}
	user, field := e.Data.ID, "data.id"
	if op == events.OperationLogin {
		user, field = e.Data.UserID, "data.user_id"
	}
	if user == "" {
		return unmappable(events.ReasonMissingField, body, d.ID, "%s of an event of type %s is missing", field, typeName(e.Type))
	}
	ev := events.AuthEvent{
		SchemaVersion: events.SchemaVersion,
		ID:            eventID("clerk", d.ID),
		OperationType: op,
		Providers:     []string{ProviderClerk},
		User:          events.User{ID: user},
		Time:          clerkTime(e.Timestamp, d.Timestamp),
	}
	return mapped(ev, body, d.ID)
}

// clerkTime is when the event occurred: the payload's timestamp, read as
// milliseconds when it is 10^11 or more (past 1973 in milliseconds, past
// the year 5000 in seconds), else as seconds; the delivery's signed
// timestamp when the payload has none.
func clerkTime(ts json.Number, delivered time.Time) time.Time {
	n, err := ts.Int64()
	switch {
	case err != nil || n <= 0:
		return delivered.UTC()
	case n >= 1e11:
		return time.UnixMilli(n).UTC()
	default:
		return time.Unix(n, 0).UTC()
	}
}
