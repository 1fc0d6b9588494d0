package bridge

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/customdata-worker/customdata-worker/internal/bridge/apikey"
)

// HydraAuth is what the token hook checks on each call: the header and
// value configured in Hydra's oauth2.token_hook.auth (type api_key, in
// header). With Header "Authorization" the value is "Bearer <key>";
// with any other header it is the key itself.
type HydraAuth struct {
	// Header is auth.config.name (default "Authorization").
	Header string
	// Keys are the accepted keys (several: rotation).
	Keys []string
}

// WithHydra serves Ory Hydra's token hook (oauth2.token_hook), checking
// auth on every call. With idToken the custom data also goes into the ID
// token's claims, not only the access token's.
func WithHydra(auth HydraAuth, idToken bool) Option {
	return func(s *Server) error {
		k, err := apikey.NewHeaderKey(auth.Header, auth.Keys)
		if err != nil {
			return errors.New("bridge: WithHydra: no key (Hydra's token_hook.auth is required)")
		}
		s.hydra, s.hydraID = &k, idToken
		return nil
	}
}

// hydraRequest is the token hook's request
// (https://www.ory.sh/docs/hydra/guides/claims-at-refresh, "Webhook
// payload"; oauth2/token_hook.go in ory/hydra): the session with the
// claims it carries so far, and the token request. Only what the bridge
// uses is decoded; claim values are kept byte for byte.
type hydraRequest struct {
	Session *struct {
		IDToken *struct {
			Claims *struct {
				Ext map[string]json.RawMessage `json:"ext"`
				// The login's times, RFC 3339 (jwt.IDTokenClaims), kept
				// as sent: a LOGIN's id is made of them.
				IssuedAt    json.RawMessage `json:"iat"`
				RequestedAt json.RawMessage `json:"rat"`
				AuthTime    json.RawMessage `json:"auth_time"`
			} `json:"id_token_claims"`
			// Subject is the user: the access token's sub.
			Subject string `json:"subject"`
		} `json:"id_token"`
		// Extra holds the access token's extra claims.
		Extra map[string]json.RawMessage `json:"extra"`
		// ConsentChallenge is the id of the consent request the grant
		// came from (oauth2/handler.go, updateSessionWithRequest): one per
		// authorization, the same in every token request of its session.
		ConsentChallenge string `json:"consent_challenge"`
	} `json:"session"`
	Request *struct {
		ClientID   string   `json:"client_id"`
		GrantTypes []string `json:"grant_types"`
	} `json:"request"`
}

// hydraResponse is the answer that changes the tokens' claims. Hydra
// replaces the session's access-token extra claims and the ID token's
// extra claims with what it holds, so both carry every claim the session
// had, plus the custom data.
type hydraResponse struct {
	Session struct {
		AccessToken map[string]json.RawMessage `json:"access_token"`
		IDToken     map[string]json.RawMessage `json:"id_token"`
	} `json:"session"`
}

// serveHydra answers Hydra's token hook (every grant, refresh included):
// 200 with the session's claims extended by the custom data; 204 (no
// change) when the session names no user (client credentials); 401 for a
// wrong or missing key and 503 when the data cannot be read in time,
// either of which makes Hydra fail the token request.
func (s *Server) serveHydra(w http.ResponseWriter, r *http.Request) string {
	if !s.hydra.Authorized(r.Header) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "token hook authentication required"})
		return outcomeUnauthorized
	}
	body, err := s.body(w, r)
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "request body too large or unreadable"})
		return outcomeBadRequest
	}
	var req hydraRequest
	if err := json.Unmarshal(body, &req); err != nil || req.Session == nil || req.Request == nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body must be Hydra's token hook request: session and request"})
		return outcomeBadRequest
	}
	var user string
	if req.Session.IDToken != nil {
		user = req.Session.IDToken.Subject
	}
	// With client credentials Hydra makes the client its own subject:
	// there is no user to look up.
	if user == "" || (len(req.Request.GrantTypes) == 1 && req.Request.GrantTypes[0] == "client_credentials") {
		w.WriteHeader(http.StatusNoContent)
		return outcomeNoUser
	}
	d, err := s.read(w, r, user)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "custom data unavailable"})
		return outcomeUnavailable
	}
	var resp hydraResponse
	resp.Session.AccessToken = orEmpty(req.Session.Extra)
	resp.Session.IDToken = map[string]json.RawMessage{}
	if it := req.Session.IDToken; it != nil && it.Claims != nil && it.Claims.Ext != nil {
		resp.Session.IDToken = it.Claims.Ext
	}
	outcome := s.extend(resp.Session.AccessToken, d)
	if s.hydraID {
		s.extend(resp.Session.IDToken, d)
	}
	writeJSON(w, http.StatusOK, resp)
	if s.logins != nil && s.logins.cfg.Hydra && HydraLoginGrant(req.Request.GrantTypes) {
		s.logins.offer(hydraLogin(req, user, time.Now()))
	}
	return outcome
}

func orEmpty(m map[string]json.RawMessage) map[string]json.RawMessage {
	if m == nil {
		return map[string]json.RawMessage{}
	}
	return m
}
