package opcheck

import (
	"context"
	"io"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/internal/redact"
	"github.com/customdata-worker/customdata-worker/worker"
)

// DefaultSample is how many documents the collection sample reads at most.
const DefaultSample = 10000

// Config says what to check.
type Config struct {
	// Worker is the worker's configuration, as `run` would use it.
	Worker worker.Config
	// Sample bounds the documents read for duplicated user ids and
	// oversize documents (0: DefaultSample; negative: none).
	Sample int
	// Progress receives a progress line while a large sample is read
	// (nil: none).
	Progress io.Writer
	// Timeout bounds each connection attempt and each check (default 5s).
	Timeout time.Duration
}

// Run checks everything and returns the report; it does not stop at the
// first failure, only skips what depends on a connection that failed.
// It changes nothing on either server.
func Run(ctx context.Context, cfg Config) (r Report) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Sample == 0 {
		cfg.Sample = DefaultSample
	}
	w := cfg.Worker
	w.Data.SetDefaults()
	w.Auth.SetDefaults()
	w.Notify.SetDefaults()
	w.Streams.SetDefaults()
	cfg.Worker = w

	defer func() { r.finish(secretsOf(w)) }() // on the returned report
	if !checkConfiguration(w, nil, &r) {
		return r
	}

	// The collection handle is needed by the auth consumer's verification
	// (it does no IO with it), whether MongoDB answers or not.
	client, mongoErr := worker.ConnectMongo(ctx, w.MongoURI, appName(w), cfg.Timeout)
	if client != nil {
		defer func() { _ = client.Disconnect(context.WithoutCancel(ctx)) }()
	}
	checkNATS(ctx, cfg, client, &r)
	checkMongo(ctx, cfg, client, mongoErr, &r)
	return r
}

// Offline is `check --offline`: Run's configuration line alone (the
// settings and the trigger file, whose loading failed with triggersErr
// when not nil), contacting no server.
func Offline(cfg Config, triggersErr error) (r Report) {
	defer func() { r.finish(secretsOf(cfg.Worker)) }()
	r.Offline = true
	checkConfiguration(cfg.Worker, triggersErr, &r)
	return r
}

// checkConfiguration adds the configuration line and reports whether it
// passed.
func checkConfiguration(w worker.Config, triggersErr error, r *Report) bool {
	if triggersErr != nil {
		r.add("configuration", Fail, "triggers: %v", triggersErr)
		return false
	}
	if err := w.Validate(); err != nil {
		r.add("configuration", Fail, "%v", err)
		return false
	}
	r.add("configuration", OK, "valid; triggers %v", w.Triggers.Names())
	return true
}

// secretsOf lists what the report must never show.
func secretsOf(w worker.Config) []string {
	return append(append(redact.Secrets(w.MongoURI), redact.SecretsOfURIs(w.NATS.URL)...), w.NATS.Password, w.NATS.Token)
}

func appName(w worker.Config) string {
	if w.NATS.Name != "" {
		return w.NATS.Name + "-check"
	}
	return "customdata-worker-check"
}

// collection returns the custom-data collection, on client or, when
// MongoDB does not answer, on a client that never connects.
func collection(cfg worker.Config, client *mongo.Client) *mongo.Collection {
	if client == nil {
		client, _ = mongo.Connect() // lazy: no IO until used
	}
	return client.Database(cfg.Data.Database).Collection(cfg.Data.Collection)
}
