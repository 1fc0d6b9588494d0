package natsconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"strings"

	"github.com/nats-io/nats.go"
)

// ErrUnusableFile: a configured nkey seed, creds, CA, certificate or key
// file cannot be read or is not what it should be. The error wrapping it
// names the path.
var ErrUnusableFile = errors.New("cannot be used")

// Refused reports whether a failed connect was refused for a reason that
// retrying cannot fix, only an operator: the server rejected the
// credentials (authorization violation, expired or revoked), TLS could not
// be agreed or verified (unknown CA, wrong host name, no or rejected client
// certificate, TLS wanted by one side only), or a configured file is
// unusable. Anything else (no server answering, a timeout, a connection
// reset mid-way) is an outage, to be retried.
func Refused(err error) bool {
	if err == nil {
		return false
	}
	return authRefused(err) || tlsRefused(err) || errors.Is(err, ErrUnusableFile) || isPathError(err)
}

// serverAuthErrors are the server's -ERR texts for refused credentials.
// At the first connect the client returns the server's error as is; only
// "authorization violation" matches its sentinel under errors.Is.
var serverAuthErrors = []string{
	"authorization violation",
	"authentication expired", // user or account
	"authentication revoked",
}

func authRefused(err error) bool {
	for _, target := range []error{nats.ErrAuthorization, nats.ErrAuthExpired, nats.ErrAuthRevoked, nats.ErrAccountAuthExpired} {
		if errors.Is(err, target) {
			return true
		}
	}
	msg := strings.ToLower(err.Error())
	for _, s := range serverAuthErrors {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func tlsRefused(err error) bool {
	if errors.Is(err, nats.ErrSecureConnRequired) || errors.Is(err, nats.ErrSecureConnWanted) {
		return true
	}
	var (
		verify    *tls.CertificateVerificationError
		authority x509.UnknownAuthorityError
		host      x509.HostnameError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
		op        *net.OpError
	)
	if errors.As(err, &verify) || errors.As(err, &authority) || errors.As(err, &host) ||
		errors.As(err, &invalid) || errors.As(err, &record) {
		return true
	}
	// The server refused the handshake with a TLS alert ("remote error:
	// tls: certificate required", "bad certificate", "unknown certificate
	// authority"): crypto/tls returns it as this operation.
	if errors.As(err, &op) && op.Op == "remote error" {
		return true
	}
	// A server that requires a client certificate and gets none or one it
	// does not trust closes the connection right after a TLS 1.3 handshake.
	return errors.Is(err, nats.ErrTLS) && strings.Contains(err.Error(), "after TLS handshake")
}

// isPathError: the client failed to read a file (the CA, the client
// certificate, a creds file) between Validate and the connect.
func isPathError(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe)
}
