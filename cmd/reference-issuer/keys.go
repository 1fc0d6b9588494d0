package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/go-jose/go-jose/v4"
)

// keyConfig says where the signing key and the keys still accepted after a
// rotation come from.
type keyConfig struct {
	SigningKeyFile   string   // empty: a key generated for this run, if AllowEphemeral
	PreviousKeyFiles []string // earlier signing keys (private or public PEM)
	AllowEphemeral   bool
}

// errNoSigningKey: no key file and no explicit dev setting. Without a
// shared key file every replica would sign with a key of its own, and the
// tokens of one would not verify at another (nor after a restart).
var errNoSigningKey = fmt.Errorf("%s_SIGNING_KEY_FILE is not set: refusing to sign with a key generated for this run "+
	"(each replica would have its own, tokens would die with the process); set %s_DEV_EPHEMERAL_KEY=true to allow it for development",
	envPrefix, envPrefix)

// keySet is the signing key and the public JWK set: the signing key's
// public half first, then the previous keys', each with its kid.
type keySet struct {
	signing   jose.JSONWebKey // private, with kid
	public    jose.JSONWebKeySet
	ephemeral bool // generated for this run
}

func loadKeySet(c keyConfig) (keySet, error) {
	var ks keySet
	var priv *ecdsa.PrivateKey
	var err error
	switch {
	case c.SigningKeyFile != "":
		if priv, err = loadSigningKey(c.SigningKeyFile); err != nil {
			err = fmt.Errorf("%s_SIGNING_KEY_FILE: %w", envPrefix, err)
		}
	case c.AllowEphemeral:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		ks.ephemeral = true
	default:
		err = errNoSigningKey
	}
	if err != nil {
		return keySet{}, err
	}
	if ks.signing, err = newJWK(priv); err != nil {
		return keySet{}, err
	}
	ks.public.Keys = append(ks.public.Keys, ks.signing.Public())
	for _, file := range c.PreviousKeyFiles {
		pub, err := loadVerifyKey(file)
		if err != nil {
			return keySet{}, err
		}
		jwk, err := newJWK(pub)
		if err != nil {
			return keySet{}, err
		}
		if len(ks.public.Key(jwk.KeyID)) == 0 { // the current key listed again, or twice
			ks.public.Keys = append(ks.public.Keys, jwk)
		}
	}
	return ks, nil
}

// newJWK wraps an ES256 key (private or public) with its RFC 7638
// thumbprint as kid, so that the same key gets the same kid on every
// replica and across restarts.
func newJWK(key any) (jose.JSONWebKey, error) {
	jwk := jose.JSONWebKey{Key: key, Algorithm: string(jose.ES256), Use: "sig"}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("key thumbprint: %w", err)
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	return jwk, nil
}

// loadSigningKey reads a PEM EC P-256 private key, SEC 1 or PKCS#8.
func loadSigningKey(file string) (*ecdsa.PrivateKey, error) {
	block, err := readPEM(file)
	if err != nil {
		return nil, err
	}
	k, err := parsePrivate(block)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", file, err)
	}
	return k, checkP256(file, &k.PublicKey)
}

// loadVerifyKey reads a previous key: the private key file it signed with,
// or only its public half (PEM "PUBLIC KEY", PKIX).
func loadVerifyKey(file string) (*ecdsa.PublicKey, error) {
	block, err := readPEM(file)
	if err != nil {
		return nil, err
	}
	var pub *ecdsa.PublicKey
	if block.Type == "PUBLIC KEY" {
		pk, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("previous key %s: %w", file, err)
		}
		var ok bool
		if pub, ok = pk.(*ecdsa.PublicKey); !ok {
			return nil, fmt.Errorf("previous key %s: not an EC key", file)
		}
	} else {
		k, err := parsePrivate(block)
		if err != nil {
			return nil, fmt.Errorf("previous key %s: %w", file, err)
		}
		pub = &k.PublicKey
	}
	return pub, checkP256(file, pub)
}

func readPEM(file string) (*pem.Block, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("key file %s: no PEM block", file)
	}
	return block, nil
}

func parsePrivate(block *pem.Block) (*ecdsa.PrivateKey, error) {
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	pk, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not an EC private key: %w", err)
	}
	k, ok := pk.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an EC key")
	}
	return k, nil
}

func checkP256(file string, k *ecdsa.PublicKey) error {
	if k.Curve != elliptic.P256() {
		return fmt.Errorf("key %s: ES256 needs a P-256 key", file)
	}
	return nil
}
