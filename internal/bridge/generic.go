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
// a configured bearer token: 200 with the document, 404 when the user has
// none, 401 without a valid token, 400 for an id no user can have, 503
// when the data cannot be read in time.
func (s *Server) serveGeneric(w http.ResponseWriter, r *http.Request) string {
	if tok, ok := apikey.Bearer(r.Header); !ok || !s.tokens.Match(tok) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="customdata-bridge"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "bearer token required"})
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
