package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// apiClient is what any client of the reference issuer does: log in,
// refresh, and verify tokens with the published JWK set (a stock library,
// no shared secret). The demo and the end-to-end test use it.
type apiClient struct {
	base     string
	http     *http.Client
	keys     *jose.JSONWebKeySet
	iss, aud string           // expected iss and aud claims
	clock    func() time.Time // nil: time.Now
}

// tokenClaims are the claims a client reads from a verified token.
type tokenClaims struct {
	Subject string
	Expiry  time.Time
	// SessionExpiry is when refreshes stop (session_exp).
	SessionExpiry time.Time
	KeyID         string         // kid of the key that signed it
	CustomData    map[string]any // nil when the token carries none
	Raw           json.RawMessage
}

func newAPIClient(ctx context.Context, base, iss, aud string) (*apiClient, error) {
	c := &apiClient{base: base, http: &http.Client{Timeout: 15 * time.Second}, iss: iss, aud: aud}
	if err := c.fetchKeys(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// fetchKeys (re)reads the JWK set, as a client does at start and when a
// token names a kid it does not know (a rotation).
func (c *apiClient) fetchKeys(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/.well-known/jwks.json", nil)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || len(set.Keys) == 0 {
		return fmt.Errorf("jwks: no keys (%v)", err)
	}
	c.keys = &set
	return nil
}

func (c *apiClient) login(ctx context.Context, userID, provider string) (string, tokenClaims, error) {
	body, _ := json.Marshal(map[string]string{"userId": userID, "provider": provider})
	return c.token(ctx, "/login", "", body)
}

func (c *apiClient) refresh(ctx context.Context, token string, force bool) (string, tokenClaims, error) {
	path := "/refresh"
	if force {
		path += "?force=true"
	}
	return c.token(ctx, path, token, nil)
}

func (c *apiClient) token(ctx context.Context, path, bearer string, body []byte) (string, tokenClaims, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", tokenClaims{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode != http.StatusOK {
		return "", tokenClaims{}, fmt.Errorf("%s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
	}
	var tr tokenResponse
	if err := json.Unmarshal(b, &tr); err != nil {
		return "", tokenClaims{}, fmt.Errorf("%s: %w", path, err)
	}
	cl, err := c.verify(ctx, tr.AccessToken)
	return tr.AccessToken, cl, err
}

// verify checks a token as a resource server would: typ at+jwt, a kid
// found in the JWK set (refetched once if unknown), the signature, iss,
// aud and exp; then reads its claims.
func (c *apiClient) verify(ctx context.Context, raw string) (tokenClaims, error) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return tokenClaims{}, err
	}
	if len(tok.Headers) != 1 {
		return tokenClaims{}, fmt.Errorf("token has %d signatures, want 1", len(tok.Headers))
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "at+jwt" {
		return tokenClaims{}, fmt.Errorf("token typ %q, want at+jwt", typ)
	}
	keys := c.keys.Key(h.KeyID)
	if len(keys) == 0 {
		if err := c.fetchKeys(ctx); err != nil {
			return tokenClaims{}, err
		}
		if keys = c.keys.Key(h.KeyID); len(keys) == 0 {
			return tokenClaims{}, fmt.Errorf("token kid %q not in the JWK set", h.KeyID)
		}
	}
	var std jwt.Claims
	var all map[string]any
	if err := tok.Claims(keys[0].Key, &std, &all); err != nil {
		return tokenClaims{}, fmt.Errorf("token signature: %w", err)
	}
	if std.Expiry == nil {
		return tokenClaims{}, fmt.Errorf("token has no exp")
	}
	// No leeway: a client checks whether the issuer will still take it.
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: c.iss, AnyAudience: jwt.Audience{c.aud}, Time: c.time()}, 0); err != nil {
		return tokenClaims{}, err
	}
	out := tokenClaims{Subject: std.Subject, Expiry: std.Expiry.Time(), KeyID: h.KeyID}
	if se, ok := all["session_exp"].(float64); ok {
		out.SessionExpiry = time.Unix(int64(se), 0)
	}
	if cd, ok := all["custom_data"].(map[string]any); ok {
		out.CustomData = cd
	}
	out.Raw, _ = json.Marshal(all["custom_data"])
	return out, nil
}

func (c *apiClient) time() time.Time {
	if c.clock == nil {
		return time.Now()
	}
	return c.clock()
}

// field returns custom_data[name] as a string ("" when absent); dates are
// relaxed Extended JSON {"$date": "…"}.
func (t tokenClaims) field(name string) string {
	v, ok := t.CustomData[name]
	if !ok {
		return ""
	}
	if m, ok := v.(map[string]any); ok {
		if d, ok := m["$date"].(string); ok {
			return d
		}
	}
	return fmt.Sprint(v)
}
