package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
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
	body, ok := s.body(w, r, sourceAuth0, true)
	if !ok {
		return requestTooLarge
	}
	return s.deliver(w, r, sourceAuth0, auth0Items(body, s.now()))
}

// auth0Items maps a log stream's body in any of its content formats (a
// JSON array, JSON lines, or one object). An element that is not a log
// event object is dead-lettered on its own, and so is a line of JSON
// lines that is not JSON; a body none of whose parts can be read (not
// JSON, a broken array) is one malformed_json dead letter. In a batch,
// each dead letter names its element or line.
func auth0Items(body []byte, now time.Time) []item {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		// One syntax error leaves no element to tell from the next.
		var elems []json.RawMessage
		if json.Unmarshal(trimmed, &elems) != nil {
			return []item{auth0Unreadable(body)}
		}
		items := make([]item, 0, len(elems))
		for i, e := range elems {
			it := auth0Item(e, now)
			if len(elems) > 1 {
				it.where = "element " + strconv.Itoa(i+1)
			}
			items = append(items, it)
		}
		return items
	}
	values, ok := jsonValues(body)
	if !ok {
		if values, ok = jsonLines(body); !ok {
			return []item{auth0Unreadable(body)}
		}
	}
	items := make([]item, 0, len(values))
	for _, v := range values {
		var it item
		if v.err != "" {
			it = unmappable(events.ReasonMalformedJSON, v.raw, "", "the line is not valid JSON %s", v.err)
		} else {
			it = auth0Item(v.raw, now)
		}
		if len(values) > 1 {
			it.where = "line " + strconv.Itoa(v.line)
		}
		items = append(items, it)
	}
	return items
}

func auth0Unreadable(body []byte) item {
	return unmappable(events.ReasonMalformedJSON, body, "", "the body is not a JSON array, JSON lines or a JSON object of log events")
}

// lineValue is one JSON value of a body that is not an array, with the
// line it starts on (from 1); err says why a line is not JSON.
type lineValue struct {
	raw  json.RawMessage
	line int
	err  string
}

// jsonValues reads body as a sequence of JSON values (JSON lines, or one
// object, pretty-printed or not). ok is false when any part of it is not
// JSON, or when it holds none.
func jsonValues(body []byte) ([]lineValue, bool) {
	var values []lineValue
	dec := json.NewDecoder(bytes.NewReader(body))
	line, counted := 1, 0
	for {
		var v json.RawMessage
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, false
		}
		// Counted on from the last value: a batch of many is read once.
		start := int(dec.InputOffset()) - len(v)
		line += bytes.Count(body[counted:start], []byte{'\n'})
		counted = start
		values = append(values, lineValue{raw: v, line: line})
	}
	return values, len(values) > 0
}

// jsonLines reads body line by line, for JSON lines with a line that is
// not JSON: each non-blank line is a value, or a line that is not JSON.
// ok is false unless at least one line is a JSON object: a body that is
// no JSON lines at all (a broken pretty-printed object) stays one body.
func jsonLines(body []byte) ([]lineValue, bool) {
	var values []lineValue
	objects := 0
	for i, l := range bytes.Split(body, []byte{'\n'}) {
		l = bytes.TrimSpace(l)
		if len(l) == 0 {
			continue
		}
		v := lineValue{raw: l, line: i + 1}
		var raw json.RawMessage
		if err := json.Unmarshal(l, &raw); err != nil {
			v.err = syntaxDetail(err, len(l))
		} else if l[0] == '{' {
			objects++
		}
		values = append(values, v)
	}
	return values, objects > 0
}

// syntaxDetail says where a line of n bytes stops being JSON, as the
// worker's decoder does.
func syntaxDetail(err error, n int) string {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se) && se.Offset >= int64(n):
		return "(it ends early)"
	case se != nil:
		return fmt.Sprintf("at byte %d: %v", se.Offset, se)
	}
	return fmt.Sprintf("(%v)", err)
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
