package bridge

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
)

// HydraProvider is the provider of the LOGINs of Hydra login grants.
const HydraProvider = "hydra"

// hydraLoginGrants are the grants by which a user signs in through Hydra:
// the authorization code and device code grants end a login and consent
// flow (oauth2/handler.go: updateSessionWithRequest builds their session
// from it), the password grant checks the user's credentials
// (fosite/handler/oauth2/flow_resource_owner.go). Not refresh_token (the
// same session again), client_credentials (no user) or
// urn:ietf:params:oauth:grant-type:jwt-bearer (RFC 7523: an assertion
// another issuer signed; the user did not sign in at Hydra).
var hydraLoginGrants = []string{"authorization_code", "urn:ietf:params:oauth:grant-type:device_code", "password"}

// HydraLoginGrant reports whether a token request of these grant types
// (the token hook's request.grant_types) is a login: one of the login
// grants, and no refresh.
func HydraLoginGrant(grantTypes []string) bool {
	return !slices.Contains(grantTypes, "refresh_token") &&
		slices.ContainsFunc(grantTypes, func(g string) bool { return slices.Contains(hydraLoginGrants, g) })
}

// hydraLogin is the LOGIN of one Hydra login grant. Its id is derived from
// what the token request's session holds as Hydra sent it: the user, the
// client, the consent request (one per authorization), the login's
// auth_time, the authorization's rat, the session's iat and the grant
// types. Hydra's retries of one hook call send the same bytes, and a
// client's retry of the same code exchange reads the same stored session,
// so both publish the same id, which JetStream stores once within its
// duplicate window; two authorizations differ in consent request and rat
// (a password grant, which has neither, in iat). The id token's jti is no
// help: Hydra sets it only when it signs the token, after the hook. The
// event's time is auth_time (when the user authenticated), else iat.
func hydraLogin(req hydraRequest, user string, now time.Time) events.AuthEvent {
	var iat, rat, authTime []byte
	if c := req.Session.IDToken.Claims; c != nil {
		iat, rat, authTime = bytes.TrimSpace(c.IssuedAt), bytes.TrimSpace(c.RequestedAt), bytes.TrimSpace(c.AuthTime)
	}
	h := sha256.New()
	for _, part := range [][]byte{[]byte(user), []byte(req.Request.ClientID), []byte(req.Session.ConsentChallenge), authTime, rat, iat} {
		h.Write(part)
		h.Write([]byte{0})
	}
	for _, g := range req.Request.GrantTypes {
		h.Write([]byte(g))
		h.Write([]byte{0})
	}
	ev := events.NewAuthEvent(events.OperationLogin, user, HydraProvider)
	ev.ID = "hydra:" + hex.EncodeToString(h.Sum(nil))[:32]
	ev.Time = now.UTC()
	for _, raw := range [][]byte{authTime, iat} {
		if t, ok := hydraTime(raw, now); ok {
			ev.Time = t
			break
		}
	}
	return ev
}

// hydraTime parses one of the session's times: an RFC 3339 string, the
// zero time (0001-01-01) meaning unset; one more than a minute ahead of
// now is not believed.
func hydraTime(raw []byte, now time.Time) (time.Time, bool) {
	var t time.Time
	if len(raw) == 0 || json.Unmarshal(raw, &t) != nil || t.Year() < 2000 || t.After(now.Add(time.Minute)) {
		return time.Time{}, false
	}
	return t.UTC(), true
}
