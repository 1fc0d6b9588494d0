package worker

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/internal/natsconn"
	"github.com/customdata-worker/customdata-worker/internal/outage"
	"github.com/customdata-worker/customdata-worker/internal/redact"
)

// NATSConfig says how to reach and authenticate to NATS (see
// natsconn.Config): at most one of User/Password, Token, NKeySeedFile and
// CredsFile, optionally TLS with a CA and a client certificate.
type NATSConfig = natsconn.Config

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
	if files := tlsFiles(uri); files != "" && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
		// The driver's "does not contain any valid certificates" or
		// "failed to find CERTIFICATE" does not say which file.
		err = fmt.Errorf("%w (TLS files: %s)", err, files)
	}
	return redact.Err(fmt.Errorf("MongoDB connection string cannot be used: %w", err), redact.Secrets(uri)...)
}

// tlsFiles lists the TLS file options of uri as "name=path, …" ("" when
// there are none or the query cannot be read).
func tlsFiles(uri string) string {
	_, query, ok := strings.Cut(uri, "?")
	if !ok {
		return ""
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return ""
	}
	var files []string
	for k, vs := range q {
		if strings.EqualFold(k, "tlsCAFile") || strings.EqualFold(k, "tlsCertificateKeyFile") {
			for _, v := range vs {
				files = append(files, k+"="+v)
			}
		}
	}
	slices.Sort(files)
	return strings.Join(files, ", ")
}

// ConnectNATS connects once; afterwards the client reconnects through
// outages but closes the connection for good when the server refuses the
// credentials twice in a row (natsconn.Watch, ClosedError). Connection
// state changes are logged once each. The returned connection
// is ready or an error is returned: the first connect is retried by the
// caller's policy (natsconn.Refused says when retrying cannot help).
func ConnectNATS(cfg NATSConfig, log zerolog.Logger) (*nats.Conn, error) {
	return natsconn.Connect(cfg, log)
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
