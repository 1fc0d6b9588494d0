package bridge

import (
	"crypto/x509"
	"errors"
	"net/http"
	"slices"
	"strings"
)

// WithGenericClientCerts lets callers of GET /v1/users/{userId}/custom-data
// authenticate with a client certificate instead of a bearer token (with
// WithGeneric too, either one is enough). Only a certificate the listener
// verified counts (http.Request.TLS.VerifiedChains): serve Handler over TLS
// with ClientCAs and ClientAuth tls.VerifyClientCertIfGiven (or stricter),
// as tlsfiles.ServerConfig makes it; a certificate only presented never
// authenticates. With names, the certificate's subject common name or one
// of its DNS names must be among them (403 otherwise); with none, any
// verified certificate is accepted.
func WithGenericClientCerts(names []string) Option {
	return func(s *Server) error {
		n := &clientNames{}
		for _, name := range names {
			name = strings.TrimSpace(name)
			if name == "" {
				return errors.New("bridge: WithGenericClientCerts: a blank name")
			}
			n.names = append(n.names, name)
		}
		s.certs = n
		return nil
	}
}

// clientNames are the client certificates the generic endpoint accepts:
// every verified one when names is empty.
type clientNames struct{ names []string }

func (n *clientNames) allows(cert *x509.Certificate) bool {
	if len(n.names) == 0 {
		return true
	}
	// DNS names compare case-insensitively (RFC 4343), a common name
	// exactly.
	return slices.Contains(n.names, cert.Subject.CommonName) ||
		slices.ContainsFunc(cert.DNSNames, func(d string) bool {
			return slices.ContainsFunc(n.names, func(name string) bool { return strings.EqualFold(name, d) })
		})
}

// verifiedClient is the leaf of the request's verified client certificate
// chain, nil when the client presented none (or the connection is not TLS).
func verifiedClient(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0][0]
}

func (s *Server) genericEnabled() bool { return s.tokens.Len() > 0 || s.certs != nil }
