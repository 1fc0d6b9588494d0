// Package natsconn connects to NATS the one way every binary of the project
// does (the worker, its verbs and checks, the reference issuer): user and
// password, token, nkey seed file or .creds file, over plain TCP, TLS with
// a private CA or mutual TLS. Errors never carry a password, token or URL
// secret, and Refused tells a connect that retrying cannot fix from an
// outage.
package natsconn

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/internal/redact"
)

// Connect validates cfg and connects once: the first connect is not
// retried here (the caller's policy decides, with Refused). A connection
// once made reconnects through outages without limit, but not through
// refused credentials: when the server refuses them twice in a row, the
// client closes the connection for good (its default; Watch reports it,
// and the binaries exit so that a restart fails fast, naming the refusal).
// Connection state changes are logged once each.
func Connect(cfg Config, log zerolog.Logger) (*nats.Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// Client errors may quote a server URL (url.Parse errors quote it
	// whole) or the configured credentials.
	secrets := append(redact.SecretsOfURIs(cfg.URL), cfg.Password, cfg.Token)
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			// Also called on a deliberate Close; that is not an outage.
			if nc.IsClosed() {
				return
			}
			log.Warn().Err(redact.Err(err, secrets...)).Msg("NATS disconnected; reconnecting")
		}),
		nats.ClosedHandler(func(*nats.Conn) { log.Info().Msg("NATS connection closed") }),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("server", redact.URI(nc.ConnectedUrl())).Msg("NATS reconnected")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := log.Warn().Err(redact.Err(err, secrets...))
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("NATS asynchronous error")
		}),
	}
	switch {
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	case cfg.NKeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(cfg.NKeySeedFile)
		if err != nil {
			return nil, unusable("nkey seed file", cfg.NKeySeedFile, err)
		}
		opts = append(opts, o)
	case cfg.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(cfg.InboxPrefix))
	}
	if cfg.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCAFile))
	}
	if cfg.TLSCertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCertFile, cfg.TLSKeyFile))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, redact.Err(fmt.Errorf("connect to NATS at %s: %w", redact.URIs(cfg.URL), err), secrets...)
	}
	return nc, nil
}
