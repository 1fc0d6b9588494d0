package worker

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"golang.org/x/sync/errgroup"

	"github.com/customdata-worker/customdata-worker/internal/buildinfo"
	"github.com/customdata-worker/customdata-worker/internal/natsconn"
	"github.com/customdata-worker/customdata-worker/internal/ops"
	"github.com/customdata-worker/customdata-worker/internal/redact"
	"github.com/customdata-worker/customdata-worker/worker/authsync"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
	"github.com/customdata-worker/customdata-worker/worker/notify"
)

// Worker runs both flows of the custom-data worker:
//
//	auth events (JetStream) → triggers → MongoDB        (authsync.Consumer)
//	change feed (MongoDB)   → notices  → JetStream      (notify.Notifier)
//
// New checks the configuration; Run connects, provisions and runs until
// its context ends; Checks are its readiness checks (served on /readyz).
type Worker struct {
	cfg   Config
	log   zerolog.Logger
	reg   *prometheus.Registry
	ready func(jetstream.JetStream, *mongo.Client)

	running  atomic.Bool
	progress startupProgress
	consumer atomic.Pointer[authsync.Consumer]
	notifier atomic.Pointer[notify.Notifier]
	guard    atomic.Pointer[customdata.Guard]
}

// Option changes what New builds.
type Option func(*Worker) error

// WithLogger logs to log (default: nothing).
func WithLogger(log zerolog.Logger) Option { return func(w *Worker) error { w.log = log; return nil } }

// WithReady calls f with the connections once startup finished (indexes
// ensured, streams and buckets provisioned), before the flows run.
func WithReady(f func(jetstream.JetStream, *mongo.Client)) Option {
	return func(w *Worker) error { w.ready = f; return nil }
}

// New checks cfg (every section, without contacting MongoDB or NATS: the
// only IO is the DNS lookup of a mongodb+srv name, see Config.Validate) and
// returns a Worker ready to Run. Mistakes that waiting cannot fix, an unusable
// connection string among them, are reported here.
func New(cfg Config, opts ...Option) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	w := &Worker{cfg: cfg, log: zerolog.Nop(), reg: prometheus.NewRegistry()}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(w); err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
	}
	w.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildinfo.Collector("customdata_worker", buildinfo.Read()))
	return w, nil
}

// Check is one readiness check: its component's name, and a func that
// returns nil when the component is healthy, else what is wrong.
type Check = ops.Check

// Checks are the worker's readiness checks, by component: startup (the
// step it waits for), auth-consumer, collection and, with notices on,
// notifier. /readyz serves them.
func (w *Worker) Checks() []Check {
	checks := []Check{
		{Name: "startup", Check: w.progress.Check},
		{Name: "auth-consumer", Check: func() error {
			if c := w.consumer.Load(); c != nil {
				return c.Healthy()
			}
			return nil // the startup check speaks for it
		}},
		{Name: "collection", Check: func() error {
			if g := w.guard.Load(); g != nil {
				return g.Healthy()
			}
			return nil
		}},
	}
	if w.cfg.Notices {
		checks = append(checks, Check{Name: "notifier", Check: func() error {
			if n := w.notifier.Load(); n != nil {
				return n.Healthy()
			}
			return nil
		}})
	}
	return checks
}

// Run connects, provisions and runs both flows until ctx ends. Startup
// steps (connect, ensure the unique index, provision) are retried while a
// dependency is down and stop at the first error retrying cannot fix;
// meanwhile the ops endpoints serve and /readyz names the step. On
// shutdown it lets the in-flight batch finish, drains NATS and
// disconnects MongoDB. Once ctx ends, Run returns nil, whether startup
// finished or not. When NATS closes the connection for good (the
// credentials refused after connecting), Run returns
// natsconn.ClosedError, which names the cause. A Worker runs once.
func (w *Worker) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("worker: Run called twice")
	}
	cfg := w.cfg
	w.log.Info().Strs("triggers", cfg.Triggers.Names()).Str("mongodb", redact.URI(cfg.MongoURI)).
		Str("nats", redact.URIs(cfg.NATS.URL)).Str("collection", cfg.Data.Database+"."+cfg.Data.Collection).
		Str("userIdField", cfg.Data.UserIDField).Msg("starting")
	g, gctx := errgroup.WithContext(ctx)
	// The ops endpoints serve from the start, so that /readyz says which
	// startup step the worker waits for (a dependency down, an index build
	// waiting for its commit quorum) instead of the port being closed, and
	// until the flows have stopped. The worker cannot run without its
	// probes: their failure stops it.
	opsCtx, stopOps := context.WithCancel(context.WithoutCancel(ctx))
	defer stopOps()
	if cfg.HTTPAddr != "" {
		g.Go(func() error {
			if err := ops.NewServer(cfg.HTTPAddr, w.reg, w.log, w.Checks()...).Run(opsCtx); err != nil {
				return fmt.Errorf("ops server: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		defer stopOps()
		return w.run(gctx)
	})
	err := g.Wait()
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		// Stopped while a startup step waited: a clean stop, as after startup.
		w.log.Info().Err(err).Msg("stopped before startup finished")
		return nil
	}
	return err
}

// run is Run's body: startup, then the flows.
func (w *Worker) run(ctx context.Context) error {
	cfg, log, progress := w.cfg, w.log, &w.progress
	// The steps do not name the servers: a failed attempt's error does
	// (and the "starting" log line), once.
	progress.begin("connect to NATS")
	nc, err := connectNATS(ctx, cfg, log, progress)
	if err != nil {
		return fmt.Errorf("NATS: %w", err)
	}
	defer drainNATS(nc, log)
	// nats.go closes the connection for good when the server refuses the
	// credentials twice in a row (a password rotated, a JWT expired or
	// revoked). Nothing recovers from that in this process: stop, naming
	// the refusal, so that an orchestrator restarts the worker and the
	// restart fails fast while the credentials stay refused.
	wctx, stop := context.WithCancelCause(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		if err := natsconn.Watch(wctx, nc); err != nil {
			stop(err)
		}
	}()
	err = w.runConnected(wctx, nc)
	stop(nil)
	<-watched
	if nc.IsClosed() {
		// Whichever flow saw it first ("nats: connection closed"), the
		// cause is the client's last error.
		return natsconn.ClosedError(nc)
	}
	return err
}

// runConnected is run's body once NATS is connected: the other startup
// steps, then the flows.
func (w *Worker) runConnected(ctx context.Context, nc *nats.Conn) error {
	cfg, log, progress := w.cfg, w.log, &w.progress
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("JetStream: %w", err)
	}
	progress.begin("connect to MongoDB")
	client, err := connectMongo(ctx, cfg, log, progress)
	if err != nil {
		return fmt.Errorf("MongoDB: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := client.Disconnect(dctx); err != nil {
			log.Warn().Err(err).Msg("MongoDB disconnect")
		}
	}()

	db := client.Database(cfg.Data.Database)
	coll := db.Collection(cfg.Data.Collection)
	indexStep := fmt.Sprintf("ensure the unique index %s_unique on %s.%s", cfg.Data.UserIDField, cfg.Data.Database, cfg.Data.Collection)
	if cfg.Data.AllowDuplicates {
		indexStep = fmt.Sprintf("ensure an index on %s.%s.%s", cfg.Data.Database, cfg.Data.Collection, cfg.Data.UserIDField)
	}
	if err := untilAvailable(ctx, log, progress, indexStep, func() error {
		// Each attempt is bounded (customdata.Config.IndexTimeout): a build
		// waiting for its commit quorum is reported, logged and waited
		// for again, never silently.
		return customdata.EnsureUserIndex(ctx, coll, cfg.Data, log)
	}); err != nil {
		return err
	}
	consumer, err := authsync.New(js, coll, cfg.Triggers, cfg.Auth,
		authsync.WithData(cfg.Data), authsync.WithStreams(cfg.Streams), authsync.WithLogger(log), authsync.WithRegisterer(w.reg))
	if err != nil {
		return err
	}
	if err := untilAvailable(ctx, log, progress, "provision auth-event streams", func() error { return consumer.Provision(ctx) }); err != nil {
		return err
	}
	// Restores the unique user index (and pre-images) when the collection
	// is dropped or renamed away and comes back while the worker runs.
	guard, err := customdata.NewGuard(coll, cfg.Data, cfg.Notices && cfg.Notify.PreAndPostImages, log)
	if err != nil {
		return err
	}
	var notifier *notify.Notifier
	if cfg.Notices {
		notifier, err = notify.New(js, db, cfg.Notify,
			notify.WithData(cfg.Data), notify.WithStreams(cfg.Streams), notify.WithLogger(log), notify.WithRegisterer(w.reg),
			notify.WithCollectionGone(guard.CheckNow), notify.WithUniqueIndexHealth(guard.Healthy))
		if err != nil {
			return err
		}
		if err := untilAvailable(ctx, log, progress, "provision notice stream and buckets", func() error { return notifier.Provision(ctx) }); err != nil {
			return err
		}
		w.notifier.Store(notifier)
	}
	w.consumer.Store(consumer)
	w.guard.Store(guard)
	progress.finish()

	// The flows share the group's ctx; the first to fail stops the others.
	flows, runCtx := errgroup.WithContext(ctx)
	launch := func(name string, fn func(context.Context) error) {
		flows.Go(func() error {
			err := fn(runCtx)
			if err == nil || (runCtx.Err() != nil && errors.Is(err, context.Canceled)) {
				return nil // stopping
			}
			// Also a context.Canceled while nothing stops: a flow that
			// ends by itself must stop the worker, not vanish.
			return fmt.Errorf("%s: %w", name, err)
		})
	}
	launch("auth consumer", consumer.Run)
	launch("collection guard", guard.Run)
	if notifier != nil {
		launch("notifier", notifier.Run)
	}
	if w.ready != nil {
		w.ready(js, client)
	}
	log.Info().Msg("running")
	<-runCtx.Done()
	log.Info().Msg("shutting down: finishing the in-flight batch")
	if err := flows.Wait(); err != nil {
		return err
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause // NATS closed the connection for good: run names why
	}
	log.Info().Msg("stopped cleanly")
	return nil
}
