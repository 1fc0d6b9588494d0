package bridge

import (
	"encoding/json"
	"net/http"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/bridge/apikey"
)

// genericResponse is the generic endpoint's answer: the document as
// relaxed Extended JSON (null when it is over the size limit and the
// policy refuses such documents) and whether it is over the limit.
type genericResponse struct {
	CustomData json.RawMessage `json:"custom_data"`
	Oversize   bool            `json:"oversize"`
}

// serveGeneric answers GET /v1/users/{userId}/custom-data for callers with
// a configured bearer token or an accepted client certificate: 200 with
// the document, 404 when the user has none, 401 with neither, 403 for a
// verified certificate whose name is not accepted (and no valid token),
// 400 for an id no user can have, 503 when the data cannot be read in
// time.
func (s *Server) serveGeneric(w http.ResponseWriter, r *http.Request) string {
	if !s.genericAuthorized(w, r) {
		return outcomeUnauthorized
	}
	user := r.PathValue("userId")
	if err := events.ValidateUserID(user); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid user id"})
		return outcomeBadRequest
	}
	d, err := s.read(w, r, user)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "custom data unavailable"})
		return outcomeUnavailable
	}
	if !d.Found() {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no custom data for this user"})
		return outcomeNoDocument
	}
	resp := genericResponse{CustomData: d.JSON(), Oversize: d.Oversize()}
	if resp.CustomData == nil {
		resp.CustomData = json.RawMessage("null")
	}
	writeJSON(w, http.StatusOK, resp)
	if d.JSON() == nil {
		return outcomeOversize
	}
	return outcomeOK
}

// genericAuthorized reports whether the caller presented a configured
// bearer token or an accepted client certificate, and otherwise answers
// 401 or 403.
func (s *Server) genericAuthorized(w http.ResponseWriter, r *http.Request) bool {
	if s.tokens.Len() > 0 {
		if tok, ok := apikey.Bearer(r.Header); ok && s.tokens.Match(tok) {
			return true
		}
	}
	if s.certs != nil {
		if cert := verifiedClient(r); cert != nil {
			if s.certs.allows(cert) {
				return true
			}
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "client certificate not accepted"})
			return false
		}
	}
	msg := "bearer token required"
	switch {
	case s.certs != nil && s.tokens.Len() > 0:
		msg = "bearer token or client certificate required"
	case s.certs != nil:
		msg = "client certificate required"
	}
	if s.tokens.Len() > 0 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="customdata-bridge"`)
	}
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": msg})
	return false
}
