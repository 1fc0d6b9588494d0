package natsconn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/customdata-worker/customdata-worker/internal/redact"
	"github.com/customdata-worker/customdata-worker/internal/tlsfiles"
)

// Config says how to reach and authenticate to NATS. At most one of
// User/Password, Token, NKeySeedFile and CredsFile may be set; the TLS
// files may be added to any of them.
type Config struct {
	URL          string // comma-separated server list
	Name         string // connection name shown in server monitoring
	User         string
	Password     string // needs User
	Token        string
	NKeySeedFile string // a user nkey seed (SU…)
	CredsFile    string // a .creds file: user JWT and its nkey seed
	TLSCAFile    string // PEM CA bundle verifying the servers
	TLSCertFile  string // PEM client certificate (mutual TLS), with TLSKeyFile
	TLSKeyFile   string
	// InboxPrefix replaces _INBOX as the prefix of the connection's reply
	// subjects (requests, JetStream API calls, fetches, publish acks):
	// nats.CustomInboxPrefix. A server that lets each user subscribe only
	// under its own prefix (deploy/nats/nats.conf) keeps one user from
	// reading the replies sent to another. Empty: _INBOX.
	InboxPrefix string
}

// Validate rejects missing or ambiguous settings, and reads every
// configured file: one that cannot be read or parsed is an error wrapping
// ErrUnusableFile that names the path, never the content. Reading the
// files is its only IO.
func (c Config) Validate() error {
	if c.URL == "" {
		return errors.New("NATS URL is empty")
	}
	if err := parseURLs(c.URL); err != nil {
		return err
	}
	if c.Password != "" && c.User == "" {
		return errors.New("NATS: a password needs a user")
	}
	methods := 0
	for _, set := range []bool{c.User != "", c.Token != "", c.NKeySeedFile != "", c.CredsFile != ""} {
		if set {
			methods++
		}
	}
	if methods > 1 {
		return errors.New("NATS: set only one of user/password, token, nkey seed file, creds file")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("NATS: a TLS client certificate needs both cert and key files")
	}
	if c.InboxPrefix != "" {
		if err := validInboxPrefix(c.InboxPrefix); err != nil {
			return err
		}
	}
	return c.checkFiles()
}

// checkFiles parses each configured file as the client will, so that a
// file missing, unreadable or of the wrong kind stops a start instead of
// failing every connect attempt. Parse errors of nkeys, x509 and tls name
// what is wrong, not the bytes.
func (c Config) checkFiles() error {
	var errs []error
	if c.NKeySeedFile != "" {
		if _, err := nats.NkeyOptionFromSeed(c.NKeySeedFile); err != nil {
			errs = append(errs, unusable("nkey seed file", c.NKeySeedFile, err))
		}
	}
	if c.CredsFile != "" {
		errs = append(errs, checkCreds(c.CredsFile))
	}
	if c.TLSCAFile != "" {
		errs = append(errs, checkCA(c.TLSCAFile))
	}
	if c.TLSCertFile != "" && c.TLSKeyFile != "" {
		if _, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile); err != nil {
			errs = append(errs, unusable("TLS client certificate and key", c.TLSCertFile+", "+c.TLSKeyFile, err))
		}
	}
	return errors.Join(errs...)
}

// validInboxPrefix applies nats.go's own rules (no wildcard, no trailing
// dot), and refuses what cannot be one subject prefix (whitespace, empty
// tokens).
func validInboxPrefix(p string) error {
	bad := strings.ContainsAny(p, " \t\r\n") || slices.Contains(strings.Split(p, "."), "")
	if err := nats.CustomInboxPrefix(p)(&nats.Options{}); err != nil || bad {
		return fmt.Errorf("NATS inbox prefix %q: not a subject prefix (tokens separated by dots, no * or >, no trailing dot)", p)
	}
	return nil
}

func checkCreds(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return unusable("creds file", path, err)
	}
	defer clear(b)
	if jwt, err := nkeys.ParseDecoratedJWT(b); err != nil || !strings.HasPrefix(jwt, "eyJ") {
		return unusable("creds file", path, errors.New("no user JWT found"))
	}
	kp, err := nkeys.ParseDecoratedUserNKey(b)
	if err != nil {
		return unusable("creds file", path, errors.New("no user nkey seed found"))
	}
	kp.Wipe()
	return nil
}

func checkCA(path string) error {
	if _, err := tlsfiles.CertPool(path); err != nil {
		return unusable("TLS CA file", path, err)
	}
	return nil
}

func unusable(what, path string, err error) error {
	return fmt.Errorf("NATS %s %s: %w: %w", what, path, ErrUnusableFile, err)
}

// parseURLs parses each server of a comma-separated list as the NATS
// client does (a missing scheme means nats://), so that a list the client
// cannot use is a configuration error rather than an outage. The error
// names the server by position only: a URL may hold a password.
func parseURLs(list string) error {
	for i, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if !strings.Contains(s, "://") {
			s = "nats://" + s
		}
		u, err := url.Parse(s)
		if err == nil && u.Host == "" {
			err = errors.New("no host")
		}
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // the reason, without the URL
			}
			return redact.Err(fmt.Errorf("NATS URL #%d cannot be parsed: %w", i+1, err), redact.SecretsOfURIs(list)...)
		}
	}
	return nil
}
