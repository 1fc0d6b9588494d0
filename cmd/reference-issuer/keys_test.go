package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// keyFiles writes a new P-256 key as a SEC 1 private key, a PKCS#8 private
// key and a PKIX public key, the forms `openssl ecparam -genkey`,
// `openssl genpkey` and `openssl pkey -pubout` write.
func keyFiles(t *testing.T, name string) (sec1, pkcs8, public string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(file, typ string, der []byte, err error) string {
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name+"-"+file)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	der, err := x509.MarshalECPrivateKey(k)
	sec1 = write("sec1.pem", "EC PRIVATE KEY", der, err)
	der, err = x509.MarshalPKCS8PrivateKey(k)
	pkcs8 = write("pkcs8.pem", "PRIVATE KEY", der, err)
	der, err = x509.MarshalPKIXPublicKey(&k.PublicKey)
	public = write("pub.pem", "PUBLIC KEY", der, err)
	return sec1, pkcs8, public
}

func fileTokens(t *testing.T, kc keyConfig) *tokens {
	t.Helper()
	tok, err := newTokens(tokenConfig{keyConfig: kc, Issuer: "ref", Audience: "app", TTL: 15 * time.Minute, SessionMaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Rotation as an operator does it: the new key signs, the old one is
// listed in ISSUER_PREVIOUS_KEY_FILES. Tokens the old key signed still
// verify through the JWK set a client fetches (and still refresh); new
// tokens carry the new kid; a key that was never listed is refused.
func TestKeyRotation(t *testing.T) {
	oldSEC1, oldPKCS8, oldPublic := keyFiles(t, "old")
	newKey, _, _ := keyFiles(t, "new")
	_, strangerKey, _ := keyFiles(t, "stranger")

	before := fileTokens(t, keyConfig{SigningKeyFile: oldSEC1})
	if k2 := fileTokens(t, keyConfig{SigningKeyFile: oldPKCS8}); k2.kid() != before.kid() {
		t.Fatalf("the same key read as SEC 1 and PKCS#8 has kids %q and %q", before.kid(), k2.kid())
	}
	data := staticData{"ada": {{Key: "plan", Value: "pro"}}}
	d, _ := data.Get(context.Background(), "ada")
	oldToken, _, err := before.issue("ada", "p", d, before.newSession())
	if err != nil {
		t.Fatal(err)
	}
	stranger := fileTokens(t, keyConfig{SigningKeyFile: strangerKey})
	strangerToken, _, _ := stranger.issue("ada", "p", d, stranger.newSession())

	// The previous key as its private key file or as its public half alike.
	for name, previous := range map[string]string{"private key file": oldPKCS8, "public key file": oldPublic} {
		t.Run(name, func(t *testing.T) {
			after := fileTokens(t, keyConfig{SigningKeyFile: newKey, PreviousKeyFiles: []string{previous, newKey}})
			srv := newTestServer(t, &server{tok: after, data: data})
			api, err := newAPIClient(context.Background(), srv.URL, "ref", "app")
			if err != nil {
				t.Fatal(err)
			}
			if got := len(api.keys.Keys); got != 2 || api.keys.Keys[0].KeyID != after.kid() || api.keys.Keys[1].KeyID != before.kid() {
				t.Fatalf("JWKS after rotation: %d keys %v, want the new kid %s then the old %s", got, api.keys.Keys, after.kid(), before.kid())
			}
			if c, err := api.verify(context.Background(), oldToken); err != nil || c.KeyID != before.kid() || c.Subject != "ada" {
				t.Fatalf("token of the previous key through the JWKS: %+v %v", c, err)
			}
			if _, err := api.verify(context.Background(), strangerToken); err == nil || !strings.Contains(err.Error(), "not in the JWK set") {
				t.Fatalf("token of an unlisted key: %v", err)
			}
			_, c, err := api.refresh(context.Background(), oldToken, false)
			if err != nil || c.KeyID != after.kid() || c.field("plan") != "pro" {
				t.Fatalf("refresh with the previous key's token: %+v %v, want a token of the new kid %s", c, err, after.kid())
			}
			if status, body := postRefresh(t, srv.URL, strangerToken); status != http.StatusUnauthorized {
				t.Fatalf("refresh with an unlisted key's token: %d %s", status, body)
			}
		})
	}
}

// A configured key file that cannot be used stops the start, naming it.
func TestKeyFilesRefusedAtStart(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	_ = os.WriteFile(notPEM, []byte("hello"), 0o600)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(p384)
	wrongCurve := filepath.Join(dir, "p384.pem")
	_ = os.WriteFile(wrongCurve, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
	good, _, _ := keyFiles(t, "good")
	missing := filepath.Join(dir, "missing.pem")
	for name, kc := range map[string]keyConfig{
		"missing signing key":  {SigningKeyFile: missing},
		"signing key not PEM":  {SigningKeyFile: notPEM},
		"signing key P-384":    {SigningKeyFile: wrongCurve},
		"previous key missing": {SigningKeyFile: good, PreviousKeyFiles: []string{missing}},
		"previous key not PEM": {SigningKeyFile: good, PreviousKeyFiles: []string{notPEM}},
		"previous key P-384":   {SigningKeyFile: good, PreviousKeyFiles: []string{wrongCurve}},
	} {
		_, err := newTokens(tokenConfig{keyConfig: kc, Issuer: "ref", Audience: "app", TTL: time.Minute, SessionMaxAge: time.Hour})
		file := kc.SigningKeyFile
		if len(kc.PreviousKeyFiles) > 0 {
			file = kc.PreviousKeyFiles[0]
		}
		if err == nil || !strings.Contains(err.Error(), file) {
			t.Errorf("%s: %v, want an error naming %s", name, err, file)
		}
	}
	// The env var is a comma-separated list.
	t.Setenv("ISSUER_SIGNING_KEY_FILE", good)
	t.Setenv("ISSUER_PREVIOUS_KEY_FILES", notPEM+","+wrongCurve)
	c, err := loadConfig()
	if err != nil || len(c.PreviousKeyFiles) != 2 || c.PreviousKeyFiles[1] != wrongCurve {
		t.Fatalf("ISSUER_PREVIOUS_KEY_FILES: %q %v", c.PreviousKeyFiles, err)
	}
	if got := c.tokenConfig().PreviousKeyFiles; len(got) != 2 {
		t.Fatalf("tokenConfig lost the previous keys: %q", got)
	}
}
