package ingest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
)

// ProviderKratos is the provider of a Kratos event whose body names no
// method; with one it is "kratos-<method>" (kratos-password, kratos-oidc,
// kratos-code, kratos-webauthn, kratos-passkey, …).
const ProviderKratos = "kratos"

// kratosBody is what deploy/kratos/customdata.jsonnet renders from the
// web_hook's ctx (https://www.ory.sh/docs/guides/integrate-with-ory-cloud-through-webhooks,
// "Customizing request body with Jsonnet"): the identity, the flow that
// ran the hook, the method it completed, and when. Other members are
// ignored, so a template may send more.
type kratosBody struct {
	IdentityID string `json:"identity_id"`
	FlowID     string `json:"flow_id"`
	Method     string `json:"method"`
	Time       string `json:"time"`
}

// kratosHandler takes Kratos's web_hook action after registration (op
// CREATE) or after login (op LOGIN): authenticated by its api_key or
// basic_auth, then mapped and published.
func (s *Server) kratosHandler(op events.Operation) func(http.ResponseWriter, *http.Request) string {
	return func(w http.ResponseWriter, r *http.Request) string {
		if !s.kratos.authorized(r) {
			return s.unauthorized(w, sourceKratos, "web hook authentication required", nil)
		}
		body, ok := s.body(w, r, sourceKratos, true)
		if !ok {
			return requestTooLarge
		}
		return s.deliver(w, r, sourceKratos, []item{kratosItem(op, body, s.now())})
	}
}

// kratosItem maps one Kratos web hook call. Its id is
// "kratos:<registration|login>:<flow id>": a flow completes once, and
// Kratos renders the same body when it calls again. A body without a
// flow id gets a digest of the operation, the identity and the body
// instead, which a retry repeats too.
func kratosItem(op events.Operation, body []byte, now time.Time) item {
	var k kratosBody
	if err := json.Unmarshal(body, &k); err != nil {
		return unmappable(events.ReasonMalformedJSON, body, "", "the body is not the JSON object deploy/kratos/customdata.jsonnet renders")
	}
	flow := "login"
	if op == events.OperationCreate {
		flow = "registration"
	}
	if k.IdentityID == "" {
		return unmappable(events.ReasonMissingField, body, k.FlowID, "identity_id of a %s web hook is missing (ctx.identity.id in the template)", flow)
	}
	var id string
	if k.FlowID != "" {
		id = eventID("kratos:"+flow, k.FlowID)
	} else {
		h := sha256.New()
		for _, part := range []string{flow, k.IdentityID, string(body)} {
			h.Write([]byte(part))
			h.Write([]byte{0})
		}
		id = "kratos:" + flow + ":" + hex.EncodeToString(h.Sum(nil))[:32]
	}
	ev := events.AuthEvent{
		SchemaVersion: events.SchemaVersion,
		ID:            id,
		OperationType: op,
		Providers:     []string{provider(ProviderKratos, strings.TrimSpace(k.Method))},
		User:          events.User{ID: k.IdentityID},
		Time:          kratosTime(k.Time, now),
	}
	return mapped(ev, body, k.FlowID)
}

// kratosTime is the body's time (RFC 3339: the session's
// authenticated_at after login, the identity's created_at after
// registration), or now when it has none or an unset one (Go's zero time,
// 0001-01-01, which Kratos writes for an identity not yet stored).
func kratosTime(s string, now time.Time) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() < 2000 {
		return now.UTC()
	}
	return t.UTC()
}
