// Package tlsfiles reads the PEM files of a TLS configuration once, at
// start, so that a file that cannot be used stops the start instead of
// failing every connection. Errors say what is wrong, never the bytes;
// callers name the setting and the path.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// ErrNoCertificate: a CA file holds no PEM certificate.
var ErrNoCertificate = errors.New("no PEM certificate found")

// CertPool reads a PEM CA bundle.
func CertPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, ErrNoCertificate
	}
	return pool, nil
}

// ServerConfig is the tls.Config of a server with the certificate (chain)
// and key of certFile and keyFile, TLS 1.2 or later. With clientCAFile, a
// client certificate is asked for and, when the client presents one,
// verified against that bundle (the handshake fails when it does not
// verify); a client that presents none still connects, and the handler
// decides (http.Request.TLS.VerifiedChains). The files are read once: a
// restart picks up new ones.
func ServerConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("certificate %s and key %s: %w", certFile, keyFile, err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAFile != "" {
		pool, err := CertPool(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("client CA file %s: %w", clientCAFile, err)
		}
		c.ClientCAs, c.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return c, nil
}
