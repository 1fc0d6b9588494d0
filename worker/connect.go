package worker

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/internal/outage"
	"github.com/customdata-worker/customdata-worker/internal/redact"
)

// NATSConfig says how to reach and authenticate to NATS. At most one of
// User/Password, Token, NKeySeedFile and CredsFile may be set.
type NATSConfig struct {
	URL          string // comma-separated server list
	Name         string // connection name shown in server monitoring
	User         string
	Password     string
	Token        string
	NKeySeedFile string
	CredsFile    string
	TLSCAFile    string
	TLSCertFile  string
	TLSKeyFile   string
}

// Validate rejects ambiguous authentication settings.
func (c NATSConfig) Validate() error {
	if c.URL == "" {
		return errors.New("NATS URL is empty")
	}
	if err := parseNATSURLs(c.URL); err != nil {
		return err
	}
	methods := 0
	for _, set := range []bool{c.User != "" || c.Password != "", c.Token != "", c.NKeySeedFile != "", c.CredsFile != ""} {
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
	return nil
}

// parseNATSURLs parses each server of a comma-separated list as the NATS
// client does (a missing scheme means nats://), so that a list the client
// cannot use is a configuration error rather than an outage. The error
// names the server by position only: a URL may hold a password.
func parseNATSURLs(list string) error {
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

// ValidateMongoURI parses a MongoDB connection string as the driver does,
// so that one the driver cannot use is a configuration error rather than
// an outage. A mongodb+srv name that does not resolve (yet) is left to
// the connection's retries. The error never shows the string's secrets.
func ValidateMongoURI(uri string) error {
	if uri == "" {
		return errors.New("MongoDB connection string is empty")
	}
	err := options.Client().ApplyURI(uri).Validate()
	if err == nil || outage.Unreachable(err) {
		return nil
	}
	return redact.Err(fmt.Errorf("MongoDB connection string cannot be used: %w", err), redact.Secrets(uri)...)
}

// ConnectNATS connects with infinite reconnects; connection state changes
// are logged once each. The returned connection is ready or an error is
// returned (the first connect is retried by the caller's policy, not here).
func ConnectNATS(cfg NATSConfig, log zerolog.Logger) (*nats.Conn, error) {
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
			return nil, fmt.Errorf("NATS nkey seed file: %w", err)
		}
		opts = append(opts, o)
	case cfg.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
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

// ConnectMongo creates a client for uri and checks that the server answers
// within timeout. The URI is never logged unredacted, nor are the parts of
// it that the driver's errors quote.
func ConnectMongo(ctx context.Context, uri, appName string, timeout time.Duration) (*mongo.Client, error) {
	secrets := redact.Secrets(uri)
	opts := options.Client().ApplyURI(uri).SetAppName(appName).SetServerSelectionTimeout(timeout)
	client, err := mongo.Connect(opts)
	if err != nil {
		return nil, redact.Err(fmt.Errorf("MongoDB client for %s: %w", redact.URI(uri), err), secrets...)
	}
	pingCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := client.Ping(pingCtx, nil); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, redact.Err(fmt.Errorf("MongoDB at %s does not answer: %w", redact.URI(uri), err), secrets...)
	}
	return client, nil
}
