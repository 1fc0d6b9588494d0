package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/customdata-worker/customdata-worker/issuer"
)

// tokenType is the typ header of every token: a JWT access token
// (RFC 9068 §2.1), so that it cannot be mistaken for an ID token or any
// other JWT signed with the same key.
const tokenType = "at+jwt"

// tokens signs access tokens with the current ES256 key, verifies the ones
// presented to /refresh against the current and previous keys, and
// publishes their public halves as a JWK set. Signing is go-jose's (no
// dependencies of its own, used across the Go ecosystem); nothing here
// builds or checks a signature by hand.
type tokens struct {
	signer  jose.Signer
	keys    keySet
	iss     string
	aud     string
	ttl     time.Duration
	session time.Duration // absolute session length from login
	now     func() time.Time
}

// tokenConfig is what tokens need from the configuration.
type tokenConfig struct {
	keyConfig
	Issuer        string
	Audience      string
	TTL           time.Duration
	SessionMaxAge time.Duration
}

// claims are the token's claims beside the registered ones. A session
// starts at /login (auth_time) and ends at session_exp, whatever the
// refreshes in between: a stolen token renews until then, not forever.
type claims struct {
	Provider   string           `json:"provider,omitempty"`
	AuthTime   *jwt.NumericDate `json:"auth_time,omitempty"`
	SessionExp *jwt.NumericDate `json:"session_exp,omitempty"`
	CustomData json.RawMessage  `json:"custom_data,omitempty"`
	Oversize   bool             `json:"custom_data_oversize,omitempty"`
}

// session is the span a chain of refreshed tokens may cover.
type session struct {
	AuthTime, Expiry time.Time
}

// verified is what /refresh learns from a valid token.
type verified struct {
	UserID, Provider string
	Session          session
}

var (
	// errBadToken: the token presented to /refresh is not one of ours, or expired.
	errBadToken = errors.New("invalid or expired token")
	// errSessionEnded: the token is ours but its session is over.
	errSessionEnded = errors.New("session ended: log in again")
)

func newTokens(c tokenConfig) (*tokens, error) {
	ks, err := loadKeySet(c.keyConfig)
	if err != nil {
		return nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: ks.signing},
		(&jose.SignerOptions{}).WithType(tokenType))
	if err != nil {
		return nil, fmt.Errorf("signer: %w", err)
	}
	return &tokens{signer: signer, keys: ks, iss: c.Issuer, aud: c.Audience, ttl: c.TTL, session: c.SessionMaxAge, now: time.Now}, nil
}

// kid is the key id of the signing key.
func (t *tokens) kid() string { return t.keys.signing.KeyID }

// newSession starts a session at login.
func (t *tokens) newSession() session {
	now := t.now()
	return session{AuthTime: now, Expiry: now.Add(t.session)}
}

// issue signs a token for userID carrying d as custom_data (left out when
// the user has no document or it was refused). It expires after the token
// TTL or at the end of the session, whichever comes first.
func (t *tokens) issue(userID, provider string, d issuer.Data, s session) (string, time.Time, error) {
	now := t.now()
	exp := now.Add(t.ttl)
	if s.Expiry.Before(exp) {
		exp = s.Expiry
	}
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	std := jwt.Claims{
		Issuer: t.iss, Subject: userID, Audience: jwt.Audience{t.aud}, ID: base64.RawURLEncoding.EncodeToString(id),
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(exp),
	}
	extra := claims{Provider: provider, AuthTime: jwt.NewNumericDate(s.AuthTime), SessionExp: jwt.NewNumericDate(s.Expiry),
		CustomData: d.JSON(), Oversize: d.Oversize()}
	raw, err := jwt.Signed(t.signer).Claims(std).Claims(extra).Serialize()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return raw, exp, nil
}

// verify checks a token this issuer signed, with the current or a previous
// key: typ, kid, signature, iss, aud, exp and the session's end.
func (t *tokens) verify(raw string) (verified, error) {
	bad := func(err error) (verified, error) { return verified{}, fmt.Errorf("%w: %w", errBadToken, err) }
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return bad(err)
	}
	if len(tok.Headers) != 1 {
		return bad(errors.New("not exactly one signature"))
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !isTokenType(typ) {
		return bad(fmt.Errorf("typ %q, want %q", typ, tokenType))
	}
	if h.KeyID == "" || len(t.keys.public.Key(h.KeyID)) == 0 {
		return bad(fmt.Errorf("unknown kid %q", h.KeyID))
	}
	var std jwt.Claims
	var extra claims
	if err := tok.Claims(t.keys.public, &std, &extra); err != nil { // the key of the header's kid
		return bad(err)
	}
	if std.Subject == "" || std.Expiry == nil || extra.SessionExp == nil {
		return bad(errors.New("no sub, exp or session_exp"))
	}
	now := t.now()
	sessionOver := !now.Before(extra.SessionExp.Time())
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: t.iss, AnyAudience: jwt.Audience{t.aud}, Time: now}, 30*time.Second); err != nil {
		if sessionOver && errors.Is(err, jwt.ErrExpired) {
			return verified{}, errSessionEnded
		}
		return bad(err)
	}
	if sessionOver {
		return verified{}, errSessionEnded
	}
	v := verified{UserID: std.Subject, Provider: extra.Provider, Session: session{Expiry: extra.SessionExp.Time()}}
	if extra.AuthTime != nil {
		v.Session.AuthTime = extra.AuthTime.Time()
	}
	return v, nil
}

// isTokenType accepts typ as RFC 9068 §4 says a resource server must: the
// media type, with or without its "application/" prefix, in any case.
func isTokenType(typ string) bool {
	typ = strings.ToLower(typ)
	return typ == tokenType || typ == "application/"+tokenType
}

// jwks is the public key set served at /.well-known/jwks.json: the
// signing key first, then the previous ones.
func (t *tokens) jwks() jose.JSONWebKeySet { return t.keys.public }
