package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
)

// ProviderAuth0 is the provider of an Auth0 event whose log names no
// strategy; with one it is "auth0-<strategy>" (auth0-auth0 for database
// connections, auth0-google-oauth2, auth0-samlp, auth0-email, …).
const ProviderAuth0 = "auth0"

// auth0Operations maps the log event type codes the bridge takes
// (https://auth0.com/docs/deploy-monitor/logs/log-event-type-codes):
// s Success Login, ss Success Signup, sdu Success User Deletion. Every
// other type is counted and ignored: a log stream sends the whole tenant
// log unless it is filtered by category.
var auth0Operations = map[string]events.Operation{
	"s":   events.OperationLogin,
	"ss":  events.OperationCreate,
	"sdu": events.OperationDelete,
}

// auth0TypeNames are the catalog's names of the mapped types, for dead
// letters.
var auth0TypeNames = map[string]string{
	"s":   "Success Login",
	"ss":  "Success Signup",
	"sdu": "Success User Deletion",
}

// auth0Log is one tenant log event, as the Tenant Log Catalog
// (https://auth0.com/docs/tenant-logs) describes it; only what the
// mapping uses is decoded.
type auth0Log struct {
	LogID    string `json:"log_id"`
	Type     string `json:"type"`
	Date     string `json:"date"`
	UserID   string `json:"user_id"`
	Strategy string `json:"strategy"`
}

// auth0Element is one element of a log stream's body: {"log_id", "data"}
// with the log event in data, as the custom webhook sends it; an element
// without data is taken to be the log event itself (its form in the
// Management API and on Auth0's log pages).
type auth0Element struct {
	LogID string          `json:"log_id"`
	Data  json.RawMessage `json:"data"`
}

// serveAuth0 takes an Auth0 log stream's custom webhook (POST
// /ingest/auth0): authenticated by its Authorization header, exactly as
// configured, then every log event of the batch mapped and published.
func (s *Server) serveAuth0(w http.ResponseWriter, r *http.Request) string {
	if v := r.Header.Values("Authorization"); len(v) != 1 || !s.auth0.Match(v[0]) {
		return s.unauthorized(w, sourceAuth0, "authorization token required", nil)
	}
	body, ok := s.body(w, r)
	if !ok {
		return requestTooLarge
	}
	return s.deliver(w, r, sourceAuth0, auth0Items(body, s.now()))
}

// auth0Items maps a log stream's body in any of its content formats (a
// JSON array, JSON lines, or one object). A body that is not JSON is one
// malformed_json dead letter; an element that is not a log event object
// is one of its own.
func auth0Items(body []byte, now time.Time) []item {
	elems, err := auth0Elements(body)
	if err != nil {
		return []item{unmappable(events.ReasonMalformedJSON, body, "", "the body is not a JSON array, JSON lines or a JSON object of log events")}
	}
	items := make([]item, 0, len(elems))
	for _, e := range elems {
		items = append(items, auth0Item(e, now))
	}
	return items
}

func auth0Elements(body []byte) ([]json.RawMessage, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var elems []json.RawMessage
		err := json.Unmarshal(trimmed, &elems)
		return elems, err
	}
	var elems []json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	for {
		var e json.RawMessage
		err := dec.Decode(&e)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		elems = append(elems, e)
	}
	if len(elems) == 0 {
		return nil, errors.New("empty body")
	}
	return elems, nil
}

// auth0Item maps one log event. Its id is "auth0:<log_id>": Auth0 sends a
// log event again with the same log_id.
func auth0Item(raw json.RawMessage, now time.Time) item {
	var e auth0Element
	var l auth0Log
	if json.Unmarshal(raw, &e) != nil {
		return unmappable(events.ReasonMalformedJSON, raw, "", "a log stream element is not a JSON object with log_id and data")
	}
	src := raw
	if d := bytes.TrimSpace(e.Data); len(d) > 0 && !bytes.Equal(d, []byte("null")) {
		src = d
	}
	if json.Unmarshal(src, &l) != nil {
		return unmappable(events.ReasonMalformedJSON, raw, e.LogID, "a log event is not a JSON object of the Tenant Log Catalog's shape")
	}
	logID := e.LogID
	if logID == "" {
		logID = l.LogID
	}
	op, ok := auth0Operations[l.Type]
	if !ok {
		return item{ignored: true}
	}
	if logID == "" {
		return unmappable(events.ReasonMissingField, raw, "", "log_id of a log event of type %s (%s) is missing (it makes Auth0's retries idempotent)",
			typeName(l.Type), auth0TypeNames[l.Type])
	}
	if l.UserID == "" {
		return unmappable(events.ReasonMissingField, raw, logID, "user_id of a log event of type %s (%s) is missing", typeName(l.Type), auth0TypeNames[l.Type])
	}
	t, err := time.Parse(time.RFC3339Nano, l.Date)
	if err != nil {
		t = now
	}
	ev := events.AuthEvent{
		SchemaVersion: events.SchemaVersion,
		ID:            eventID("auth0", logID),
		OperationType: op,
		Providers:     []string{provider(ProviderAuth0, strings.TrimSpace(l.Strategy))},
		User:          events.User{ID: l.UserID},
		Time:          t.UTC(),
	}
	return mapped(ev, raw, logID)
}
