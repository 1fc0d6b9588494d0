package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/customdata-worker/customdata-worker/issuer"
)

// tokens signs and verifies access tokens with one ES256 key, and
// publishes its public half as a JWK set. Signing is go-jose's (no
// dependencies of its own, used across the Go ecosystem); nothing here
// builds or checks a signature by hand.
type tokens struct {
	signer jose.Signer
	public jose.JSONWebKey
	iss    string
	ttl    time.Duration
	now    func() time.Time
}

// claims are the token's claims beside the registered ones.
type claims struct {
	Provider   string          `json:"provider,omitempty"`
	CustomData json.RawMessage `json:"custom_data,omitempty"`
	Oversize   bool            `json:"custom_data_oversize,omitempty"`
}

// errBadToken: the token presented to /refresh is not one of ours, or expired.
var errBadToken = errors.New("invalid or expired token")

func newTokens(keyFile, iss string, ttl time.Duration) (*tokens, bool, error) {
	key, generated, err := loadKey(keyFile)
	if err != nil {
		return nil, false, err
	}
	jwk := jose.JSONWebKey{Key: key, Algorithm: string(jose.ES256), Use: "sig"}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, false, fmt.Errorf("signing key thumbprint: %w", err)
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(thumb) // RFC 7638
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jwk},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, false, fmt.Errorf("signer: %w", err)
	}
	return &tokens{signer: signer, public: jwk.Public(), iss: iss, ttl: ttl, now: time.Now}, generated, nil
}

func loadKey(file string) (*ecdsa.PrivateKey, bool, error) {
	if file == "" {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		return k, true, err
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, false, fmt.Errorf("signing key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, false, fmt.Errorf("signing key %s: no PEM block", file)
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return checkP256(file, k)
	}
	pk, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, false, fmt.Errorf("signing key %s: not an EC private key: %w", file, err)
	}
	k, ok := pk.(*ecdsa.PrivateKey)
	if !ok {
		return nil, false, fmt.Errorf("signing key %s: not an EC key", file)
	}
	return checkP256(file, k)
}

func checkP256(file string, k *ecdsa.PrivateKey) (*ecdsa.PrivateKey, bool, error) {
	if k.Curve != elliptic.P256() {
		return nil, false, fmt.Errorf("signing key %s: ES256 needs a P-256 key", file)
	}
	return k, false, nil
}

// issue signs a token for userID carrying d as custom_data (left out when
// the user has no document or it was refused).
func (t *tokens) issue(userID, provider string, d issuer.Data) (string, time.Time, error) {
	now := t.now()
	exp := now.Add(t.ttl)
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	std := jwt.Claims{
		Issuer: t.iss, Subject: userID, ID: base64.RawURLEncoding.EncodeToString(id),
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(exp),
	}
	extra := claims{Provider: provider, CustomData: d.JSON(), Oversize: d.Oversize()}
	raw, err := jwt.Signed(t.signer).Claims(std).Claims(extra).Serialize()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return raw, exp, nil
}

// verify checks a token this issuer signed and returns its subject and
// provider.
func (t *tokens) verify(raw string) (userID, provider string, err error) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return "", "", fmt.Errorf("%w: %w", errBadToken, err)
	}
	var std jwt.Claims
	var extra claims
	if err := tok.Claims(t.public, &std, &extra); err != nil {
		return "", "", fmt.Errorf("%w: %w", errBadToken, err)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: t.iss, Time: t.now()}, 30*time.Second); err != nil {
		return "", "", fmt.Errorf("%w: %w", errBadToken, err)
	}
	if std.Subject == "" {
		return "", "", fmt.Errorf("%w: no subject", errBadToken)
	}
	return std.Subject, extra.Provider, nil
}

// jwks is the public key set served at /.well-known/jwks.json.
func (t *tokens) jwks() jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{t.public}}
}
