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
	base string
	http *http.Client
	keys *jose.JSONWebKeySet
}

// tokenClaims are the claims a client reads from a verified token.
type tokenClaims struct {
	Subject    string
	Expiry     time.Time
	CustomData map[string]any // nil when the token carries none
	Raw        json.RawMessage
}

func newAPIClient(ctx context.Context, base string) (*apiClient, error) {
	c := &apiClient{base: base, http: &http.Client{Timeout: 15 * time.Second}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/.well-known/jwks.json", nil)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || len(set.Keys) == 0 {
		return nil, fmt.Errorf("jwks: no keys (%v)", err)
	}
	c.keys = &set
	return c, nil
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
	cl, err := c.verify(tr.AccessToken)
	return tr.AccessToken, cl, err
}

// verify checks the token's signature with the JWK set and reads its claims.
func (c *apiClient) verify(raw string) (tokenClaims, error) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return tokenClaims{}, err
	}
	if len(tok.Headers) == 0 {
		return tokenClaims{}, fmt.Errorf("token has no header")
	}
	keys := c.keys.Key(tok.Headers[0].KeyID)
	if len(keys) == 0 {
		return tokenClaims{}, fmt.Errorf("token kid %q not in the JWK set", tok.Headers[0].KeyID)
	}
	var std jwt.Claims
	var all map[string]any
	if err := tok.Claims(keys[0].Key, &std, &all); err != nil {
		return tokenClaims{}, fmt.Errorf("token signature: %w", err)
	}
	out := tokenClaims{Subject: std.Subject, Expiry: std.Expiry.Time()}
	if cd, ok := all["custom_data"].(map[string]any); ok {
		out.CustomData = cd
	}
	out.Raw, _ = json.Marshal(all["custom_data"])
	return out, nil
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
