package bridge

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
)

// supabaseRequest is the custom access token hook's input
// (https://supabase.com/docs/guides/auth/auth-hooks/custom-access-token-hook,
// "Inputs"). Claims are kept as they came, each value byte for byte;
// other fields (Supabase Auth also sends "metadata") are ignored.
type supabaseRequest struct {
	UserID               string                     `json:"user_id"`
	Claims               map[string]json.RawMessage `json:"claims"`
	AuthenticationMethod string                     `json:"authentication_method"`
}

// supabaseError is the documented error object of an auth hook
// (https://supabase.com/docs/guides/auth/auth-hooks, "Error handling").
type supabaseError struct {
	Error struct {
		HTTPCode int    `json:"http_code"`
		Message  string `json:"message"`
	} `json:"error"`
}

// supabaseMaxAnswer is the largest answer Supabase Auth reads from an HTTP
// hook (supabase/auth internal/hooks/hookshttp, payloadLimit = 200 KiB).
const supabaseMaxAnswer = 200 * 1024

// refreshMethod is the authentication_method of a token refresh: every
// other method is a sign-in.
const refreshMethod = "token_refresh"

// serveSupabase answers the custom access token hook: the claims it sent,
// every one kept, plus the custom data under the configured claim. A call
// it cannot verify, cannot read, or cannot answer in time gets a non-2xx
// status with the documented error object, so Supabase Auth refuses to
// issue the token (without Retry-After, it does not retry).
func (s *Server) serveSupabase(w http.ResponseWriter, r *http.Request) string {
	body, err := s.body(w, r)
	if err != nil {
		supabaseFail(w, http.StatusRequestEntityTooLarge, "request body too large or unreadable")
		return outcomeBadRequest
	}
	if err := s.supabase.Verify(r.Header, body); err != nil {
		// Counted (outcome unauthorized); per call only at debug level, so
		// that a flood of forged calls cannot flood the log.
		s.log.Debug().Err(err).Str("webhook_id", r.Header.Get("webhook-id")).Msg("Supabase hook call refused: not verified")
		supabaseFail(w, http.StatusUnauthorized, "webhook signature not verified")
		return outcomeUnauthorized
	}
	var req supabaseRequest
	// An empty or missing authentication_method is a sign-in, not a bad
	// call: supabase/auth's AuthenticationMethod.String() answers "" for a
	// method it has no name for, and refusing would lock those users out.
	if err := json.Unmarshal(body, &req); err != nil || req.UserID == "" || req.Claims == nil {
		supabaseFail(w, http.StatusBadRequest, "body must be the custom access token hook's input: user_id, claims, authentication_method")
		return outcomeBadRequest
	}
	d, err := s.read(w, r, req.UserID)
	if err != nil {
		supabaseFail(w, http.StatusServiceUnavailable, "custom data unavailable")
		return outcomeUnavailable
	}
	outcome := s.extend(req.Claims, d)
	type answer struct {
		Claims map[string]json.RawMessage `json:"claims"`
	}
	b, err := encodeJSON(answer{req.Claims})
	if err == nil && len(b) > supabaseMaxAnswer {
		// Supabase Auth refuses a larger answer, and with it the sign-in:
		// the user gets the token without the data, flagged oversize.
		delete(req.Claims, s.cfg.ClaimName)
		req.Claims[s.cfg.ClaimName+"_oversize"] = json.RawMessage("true")
		outcome = outcomeOversize
		b, err = encodeJSON(answer{req.Claims})
	}
	if err != nil {
		supabaseFail(w, http.StatusInternalServerError, "answer not encoded")
		return outcomeBadRequest
	}
	writeEncoded(w, http.StatusOK, b)
	if s.logins != nil && s.logins.cfg.Supabase && req.AuthenticationMethod != refreshMethod {
		s.logins.offer(supabaseLogin(req, time.Now()))
	}
	return outcome
}

func supabaseFail(w http.ResponseWriter, status int, msg string) {
	var e supabaseError
	e.Error.HTTPCode, e.Error.Message = status, msg
	writeJSON(w, status, e)
}

// supabaseLogin is the LOGIN of one Supabase sign-in. Its id is derived
// from the token being issued (user, session, iat, method): Supabase
// Auth's retries of one call send the same claims, so a retried or
// replayed call publishes the same id, which JetStream stores once
// within its duplicate window. Its time is the token's iat.
func supabaseLogin(req supabaseRequest, now time.Time) events.AuthEvent {
	var session string
	_ = json.Unmarshal(req.Claims["session_id"], &session)
	iat := bytes.TrimSpace(req.Claims["iat"])
	h := sha256.New()
	for _, part := range [][]byte{[]byte(req.UserID), []byte(session), iat, []byte(req.AuthenticationMethod)} {
		h.Write(part)
		h.Write([]byte{0})
	}
	ev := events.NewAuthEvent(events.OperationLogin, req.UserID, SupabaseProvider(req.AuthenticationMethod))
	ev.ID = "supabase:" + hex.EncodeToString(h.Sum(nil))[:32]
	ev.Time = now.UTC()
	if secs, err := strconv.ParseInt(string(iat), 10, 64); err == nil && secs > 0 {
		if t := time.Unix(secs, 0).UTC(); t.Before(now.Add(time.Minute)) {
			ev.Time = t
		}
	}
	return ev
}

// SupabaseProvider is the provider name a Supabase sign-in's LOGIN carries:
// "supabase-" and the authentication_method, lowercased, with every
// character other than a letter or digit made '-' (password →
// supabase-password, sso/saml → supabase-sso-saml,
// oauth_provider/authorization_code → supabase-oauth-provider-authorization-code),
// cut to the 64 characters a provider name may have; an empty method is
// supabase-unknown.
func SupabaseProvider(method string) string {
	if method == "" {
		method = "unknown"
	}
	var b strings.Builder
	b.WriteString("supabase-")
	for _, c := range strings.ToLower(method) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	p := b.String()
	if len(p) > 64 {
		p = p[:64]
	}
	return p
}
