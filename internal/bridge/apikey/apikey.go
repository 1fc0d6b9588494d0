// Package apikey checks the shared secrets identity servers present in a
// header: a bearer token, an API key in a header of its own, basic-auth
// credentials, or a whole Authorization value. Secrets are kept only as
// SHA-256 digests and compared in constant time, so neither the content
// nor the length of one leaks through timing; several may be accepted at
// once, for rotation.
package apikey

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
)

// ErrNoKey: no non-blank secret was given.
var ErrNoKey = errors.New("no key")

// Set is a set of accepted secrets. The zero value accepts nothing.
type Set struct {
	digests [][sha256.Size]byte
}

// NewSet returns the set of keys, each trimmed of surrounding spaces;
// blank ones are skipped. It fails with ErrNoKey when none is left.
func NewSet(keys []string) (Set, error) {
	var s Set
	for _, k := range keys {
		if k = strings.TrimSpace(k); k != "" {
			s.digests = append(s.digests, sha256.Sum256([]byte(k)))
		}
	}
	if len(s.digests) == 0 {
		return Set{}, ErrNoKey
	}
	return s, nil
}

// Len is the number of accepted secrets.
func (s Set) Len() int { return len(s.digests) }

// Match reports whether presented is one of the secrets. Every secret is
// compared, whichever matches.
func (s Set) Match(presented string) bool {
	p := sha256.Sum256([]byte(presented))
	ok := 0
	for i := range s.digests {
		ok |= subtle.ConstantTimeCompare(p[:], s.digests[i][:])
	}
	return ok == 1
}

// Bearer returns the token of an "Authorization: Bearer <token>" header
// (the scheme is case-insensitive, RFC 7235 §2.1).
func Bearer(h http.Header) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// HeaderKey is an API key sent in one header, as Ory Hydra's and Kratos's
// webhook auth of type api_key sends it (in: header): in the
// Authorization header as "Bearer <key>", in any other header as the key
// itself.
type HeaderKey struct {
	header string
	keys   Set
}

// NewHeaderKey accepts keys in header (default Authorization).
func NewHeaderKey(header string, keys []string) (HeaderKey, error) {
	s, err := NewSet(keys)
	if err != nil {
		return HeaderKey{}, err
	}
	if header = strings.TrimSpace(header); header == "" {
		header = "Authorization"
	}
	return HeaderKey{header: header, keys: s}, nil
}

// Header is the header the key is read from.
func (k HeaderKey) Header() string { return k.header }

// Authorized reports whether h carries one of the keys, in exactly one
// header of that name.
func (k HeaderKey) Authorized(h http.Header) bool {
	if strings.EqualFold(k.header, "Authorization") {
		tok, ok := Bearer(h)
		return ok && k.keys.Match(tok)
	}
	v := h.Values(k.header)
	return len(v) == 1 && k.keys.Match(v[0])
}

// Basic is a set of accepted basic-auth credentials (RFC 7617), as Ory
// Kratos's webhook auth of type basic_auth sends them.
type Basic struct {
	pairs Set
}

// NewBasic accepts the given "user:password" pairs.
func NewBasic(pairs []string) (Basic, error) {
	for _, p := range pairs {
		if p = strings.TrimSpace(p); p != "" && !strings.Contains(p, ":") {
			return Basic{}, errors.New(`a basic-auth credential must be "user:password"`)
		}
	}
	s, err := NewSet(pairs)
	if err != nil {
		return Basic{}, err
	}
	return Basic{pairs: s}, nil
}

// Authorized reports whether r carries one of the credentials.
func (b Basic) Authorized(r *http.Request) bool {
	user, password, ok := r.BasicAuth()
	return ok && b.pairs.Match(user+":"+password)
}
