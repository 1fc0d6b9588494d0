package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/internal/natsconn"
	"github.com/customdata-worker/customdata-worker/internal/outage"
	"github.com/customdata-worker/customdata-worker/internal/retry"
)

// Startup retries back off from startupRetryInitial, doubling, to at most
// startupRetryMax (the README's Outages: "capped at 10 s").
const (
	startupRetryInitial = 500 * time.Millisecond
	startupRetryMax     = 10 * time.Second
)

// retryLogged calls fn until it succeeds, stop(err) says retrying cannot
// help, or ctx ends; it backs off exponentially and logs the first failure
// only, so an outage is one log line rather than one per attempt.
func retryLogged[T any](ctx context.Context, log zerolog.Logger, what string, stop func(error) bool, fn func() (T, error)) (T, error) {
	return retry.Forever(ctx, retry.NewBackOff(startupRetryInitial, startupRetryMax), func() (T, error) {
		v, err := fn()
		if err != nil && stop(err) {
			return v, retry.Stop(err)
		}
		return v, err
	}, func(err error, first bool) {
		if first {
			log.Warn().Err(err).Str("step", what).Msg("dependency unavailable; retrying with backoff")
		}
	})
}

// retryAll: a MongoDB connection attempt is retried whatever its error (a
// server down, a DNS name not yet resolvable, credentials being rotated).
func retryAll(error) bool { return false }

func connectMongo(ctx context.Context, cfg Config, log zerolog.Logger, progress *startupProgress) (*mongo.Client, error) {
	return retryLogged(ctx, log, "connect to MongoDB", retryAll, func() (*mongo.Client, error) {
		c, err := ConnectMongo(ctx, cfg.MongoURI, cfg.NATS.Name, 5*time.Second)
		progress.failed(err)
		return c, err
	})
}

// connectNATS retries until NATS answers, but stops at a refusal (bad
// credentials, TLS that cannot be verified, an unusable file): a retry
// would only hide it.
func connectNATS(ctx context.Context, cfg Config, log zerolog.Logger, progress *startupProgress) (*nats.Conn, error) {
	return retryLogged(ctx, log, "connect to NATS", natsconn.Refused, func() (*nats.Conn, error) {
		nc, err := ConnectNATS(cfg.NATS, log)
		progress.failed(err)
		return nc, err
	})
}

// drainNATS flushes pending publishes and acks, then waits for the
// connection to close: Drain itself returns before it is done. The client
// closes the connection itself once its drain timeout (30 s by default)
// has passed; the wait is bounded a little beyond that all the same.
func drainNATS(nc *nats.Conn, log zerolog.Logger) {
	if nc.IsClosed() {
		return // closed for good already: nothing to drain
	}
	closed := make(chan struct{})
	logClosed := nc.ClosedHandler() // set by ConnectNATS (and Watch); kept
	nc.SetClosedHandler(func(c *nats.Conn) {
		if logClosed != nil {
			logClosed(c)
		}
		close(closed)
	})
	if err := nc.Drain(); err != nil {
		log.Warn().Err(err).Msg("NATS drain")
		nc.Close()
		return
	}
	timeout := nc.Opts.DrainTimeout + 10*time.Second
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-closed:
	case <-t.C:
		log.Warn().Dur("after", timeout).Msg("NATS drain did not finish; closing")
		nc.Close()
	}
}

// untilAvailable runs a startup step, retrying while MongoDB or NATS is
// unavailable and stopping at the first error that retrying cannot fix,
// such as duplicate users or missing provisioning.
// Meanwhile /readyz names the step and its last error.
func untilAvailable(ctx context.Context, log zerolog.Logger, progress *startupProgress, step string, fn func() error) error {
	notAnOutage := func(err error) bool { return !outage.Is(err) }
	progress.begin(step)
	_, err := retryLogged(ctx, log, step, notAnOutage, func() (struct{}, error) {
		err := fn()
		progress.failed(err)
		return struct{}{}, err
	})
	if err != nil {
		return fmt.Errorf("%s: %w", step, err)
	}
	return nil
}

// startupProgress is the readiness of a worker that is still starting: the
// step it is on and, while that step is being retried, its last error.
type startupProgress struct {
	mu   sync.Mutex
	step string
	err  error
	done bool
}

func (p *startupProgress) begin(step string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.step, p.err = step, nil
}

// failed records the outcome of an attempt of the current step (nil: it
// worked).
func (p *startupProgress) failed(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

func (p *startupProgress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done, p.step, p.err = true, "", nil
}

// Check is nil once startup finished; until then it names the step.
func (p *startupProgress) Check() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.done:
		return nil
	case p.err != nil:
		return fmt.Errorf("starting: %s: %w", p.step, p.err)
	case p.step != "":
		return fmt.Errorf("starting: %s", p.step)
	}
	return errors.New("starting")
}
