package chaos

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// The reference issuer's token settings (its defaults).
const (
	tokenIssuer   = "reference-issuer"
	tokenAudience = "customdata-app"
)

// issuerProcess is bin/reference-issuer run as its own process, with a
// signing key file so that a restart keeps its tokens valid.
type issuerProcess struct {
	*process
	base string
}

// startRefIssuer starts the reference issuer and waits until /readyz
// says it is ready (NATS, the notice feed followed, MongoDB).
func (h *harness) startRefIssuer(ctx context.Context) (*issuerProcess, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	keyFile := filepath.Join(h.cfg.Dir, "issuer-signing.pem")
	if err := writeSigningKey(keyFile); err != nil {
		return nil, err
	}
	env := append(os.Environ(),
		"ISSUER_HTTP_ADDR=127.0.0.1:"+strconv.Itoa(port),
		"ISSUER_NATS_URL="+h.nats.url,
		"ISSUER_MONGODB_URI="+h.cutURI,
		"ISSUER_MONGODB_DATABASE="+database,
		"ISSUER_MONGODB_COLLECTION="+collection,
		"ISSUER_USER_ID_FIELD="+userIDField,
		"ISSUER_SIGNING_KEY_FILE="+keyFile,
		"ISSUER_LOG_FORMAT=json",
		"ISSUER_EVENT_SIGNING_SEED_FILE="+h.keys.refIssuerSeedFile,
	)
	env = append(env, h.auth.clientEnv("ISSUER", refIssuerUser)...)
	p := &issuerProcess{process: newProcess("reference-issuer", h.cfg.IssuerBin, nil, env, h.cfg.Dir), base: "http://127.0.0.1:" + strconv.Itoa(port)}
	if err := p.start(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(time.Minute); ; {
		if p.ready(ctx) {
			return p, nil
		}
		if p.exited() || time.Now().After(deadline) {
			p.stop(5 * time.Second)
			return nil, fmt.Errorf("the reference issuer did not get ready within a minute (see %s)", p.log)
		}
		select {
		case <-ctx.Done():
			p.stop(5 * time.Second)
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (p *issuerProcess) ready(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// writeSigningKey writes a new EC P-256 key as SEC 1 PEM (README,
// Signing keys and rotation).
func writeSigningKey(path string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

// issuerClient is a client of the reference issuer's token API, as a
// resource server would be: it verifies every token with the JWK set.
type issuerClient struct {
	base string
	http *http.Client
	keys *jose.JSONWebKeySet
}

func newIssuerClient(ctx context.Context, base string) (*issuerClient, error) {
	c := &issuerClient{base: base, http: &http.Client{Timeout: 10 * time.Second}}
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

// errUnauthorized is a 401 from the issuer: log in again.
var errUnauthorized = errors.New("401 from the issuer")

// login is POST /login: it publishes a LOGIN for user and returns a token.
func (c *issuerClient) login(ctx context.Context, user string) (string, json.RawMessage, error) {
	body, _ := json.Marshal(map[string]string{"userId": user, "provider": "local-userpass"})
	return c.token(ctx, "/login", "", body)
}

// refresh is POST /refresh (?force=true re-reads MongoDB): a new token
// and the custom data it carries (nil when the user has no document).
func (c *issuerClient) refresh(ctx context.Context, token string, force bool) (string, json.RawMessage, error) {
	path := "/refresh"
	if force {
		path += "?force=true"
	}
	return c.token(ctx, path, token, nil)
}

func (c *issuerClient) token(ctx context.Context, path, bearer string, body []byte) (string, json.RawMessage, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return "", nil, fmt.Errorf("%s: %w: %s", path, errUnauthorized, bytes.TrimSpace(b))
	default:
		return "", nil, fmt.Errorf("%s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(b, &tr); err != nil {
		return "", nil, fmt.Errorf("%s: %w", path, err)
	}
	data, err := c.customData(tr.AccessToken)
	return tr.AccessToken, data, err
}

// customData verifies a token (ES256, a kid of the JWK set, iss, aud,
// exp) and returns its custom_data claim.
func (c *issuerClient) customData(raw string) (json.RawMessage, error) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, err
	}
	if len(tok.Headers) != 1 {
		return nil, fmt.Errorf("token has %d signatures", len(tok.Headers))
	}
	keys := c.keys.Key(tok.Headers[0].KeyID)
	if len(keys) == 0 {
		return nil, fmt.Errorf("token kid %q not in the JWK set", tok.Headers[0].KeyID)
	}
	var std jwt.Claims
	var claims struct {
		CustomData json.RawMessage `json:"custom_data"`
	}
	if err := tok.Claims(keys[0].Key, &std, &claims); err != nil {
		return nil, fmt.Errorf("token signature: %w", err)
	}
	if err := std.Validate(jwt.Expected{Issuer: tokenIssuer, AnyAudience: jwt.Audience{tokenAudience}, Time: time.Now()}); err != nil {
		return nil, err
	}
	return claims.CustomData, nil
}

// sameJSON reports whether two JSON documents are equal as values (nil
// and "null" for no document).
func sameJSON(a, b []byte) bool {
	decode := func(b []byte) (any, bool) {
		if len(bytes.TrimSpace(b)) == 0 {
			return nil, true
		}
		var v any
		return v, json.Unmarshal(b, &v) == nil
	}
	va, ok1 := decode(a)
	vb, ok2 := decode(b)
	return ok1 && ok2 && reflect.DeepEqual(va, vb)
}

// waitFollowing waits up to d for the reference issuer's metrics to say
// its cache follows notices (customdata_issuer_notices_following 1).
func (c *issuerClient) waitFollowing(ctx context.Context, d time.Duration) error {
	for deadline := time.Now().Add(d); ; {
		following, err := c.following(ctx)
		if following {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("reference issuer: cannot tell whether it follows notices: %w", err)
			}
			return errors.New("reference issuer: its cache does not follow notices (it would read MongoDB on every refresh, so the refresh check proves nothing)")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *issuerClient) following(ctx context.Context) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/metrics", nil)
	if err != nil {
		return false, err
	}
	res, err := c.http.Do(req)
	if err != nil {
		return false, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "customdata_issuer_notices_following "); ok {
			return strings.TrimSpace(v) == "1", nil
		}
	}
	return false, errors.New("no customdata_issuer_notices_following in its /metrics")
}
