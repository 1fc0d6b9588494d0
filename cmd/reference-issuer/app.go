package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/buildinfo"
	"github.com/customdata-worker/customdata-worker/internal/cli"
	"github.com/customdata-worker/customdata-worker/internal/natsconn"
	"github.com/customdata-worker/customdata-worker/internal/redact"
	"github.com/customdata-worker/customdata-worker/issuer"
)

const appName = "reference-issuer"

func newLogger(cfg Config, w io.Writer) zerolog.Logger {
	return cli.NewLogger(w, appName, cfg.LogLevel, cfg.LogFormat)
}

// running is what runIssuer hands to a caller that embeds it (the demo and
// the end-to-end test).
type running struct {
	URL      string        // base URL of the HTTP API
	Cache    *issuer.Cache // nil when the cache is off
	JS       jetstream.JetStream
	Registry *prometheus.Registry
}

func (c Config) sourceConfig() issuer.SourceConfig {
	sc := issuer.SourceConfig{Database: c.Database, Collection: c.Collection, UserIDField: c.UserIDField, OversizeBytes: c.OversizeBytes,
		OmitFields: c.OmitFields}
	if c.Oversize == "refuse" {
		sc.Oversize = issuer.OversizeRefuse
	}
	return sc
}

// runIssuer wires the reference issuer and serves until ctx ends, or
// until NATS closes the connection for good (natsconn.ClosedError):
//
//	POST /login   → events.Publisher (LOGIN) → custom data → signed token
//	POST /refresh → custom data (cache, kept fresh by notices) → signed token
func runIssuer(ctx context.Context, cfg Config, log zerolog.Logger, ready chan<- running) error {
	log.Info().Str("mongodb", redact.URI(cfg.MongoURI)).Str("nats", redact.URIs(cfg.NATSURL)).
		Str("collection", cfg.Database+"."+cfg.Collection).Bool("notices", cfg.NoticesEnabled).
		Int("cache_entries", cfg.CacheMaxEntries).Dur("cache_ttl", cfg.CacheTTL).Msg("starting")
	tok, err := newTokens(cfg.tokenConfig())
	if err != nil {
		return err
	}
	logKeys(log, tok)

	nc, err := connectNATS(ctx, cfg, log)
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		log.Info().Msg("stopped before NATS answered")
		return nil
	}
	if err != nil {
		return fmt.Errorf("NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("JetStream: %w", err)
	}
	pubOpts := []events.PublisherOption{events.WithSubjectPrefix(cfg.AuthSubjectPrefix)}
	if cfg.EventSigningSeed != "" {
		signer, err := events.LoadSigner(cfg.EventSigningSeed)
		if err != nil {
			return fmt.Errorf("%s_EVENT_SIGNING_SEED_FILE: %w", envPrefix, err)
		}
		pubOpts = append(pubOpts, events.WithSigner(signer))
		log.Info().Str("signer", signer.PublicKey()).Msg("LOGIN events are signed")
	}
	pub, err := events.NewPublisher(js, pubOpts...)
	if err != nil {
		return err
	}
	client, err := mongo.Connect(options.Client().ApplyURI(cfg.MongoURI).SetAppName(appName))
	if err != nil {
		// The driver's parse errors quote the connection string.
		return redact.Err(fmt.Errorf("MongoDB client for %s: %w", redact.URI(cfg.MongoURI), err), redact.Secrets(cfg.MongoURI)...)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = client.Disconnect(dctx)
	}()
	src, err := issuer.NewSource(client, cfg.sourceConfig())
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildinfo.Collector("reference_issuer", buildinfo.Read()))
	var data issuer.Getter = src
	var cache *issuer.Cache
	if cfg.CacheMaxEntries > 0 {
		opts := []issuer.CacheOption{issuer.WithLogger(log)}
		if cfg.NoticesEnabled {
			opts = append(opts, issuer.WithNotices(js, issuer.NoticeConfig{SubjectPrefix: cfg.NoticeSubjectPrefix, Stream: cfg.NoticeStream, LeaderTimeout: cfg.LeaderTimeout}))
		}
		if cache, err = issuer.NewCache(src, issuer.CacheConfig{MaxEntries: cfg.CacheMaxEntries, TTL: cfg.CacheTTL}, opts...); err != nil {
			return err
		}
		reg.MustRegister(cache.Collectors()...)
		data = cache
	}
	s := &server{
		pub: pub, data: data, tok: tok, log: log,
		// A forced re-read (?force=true) per user per second, bursts of 3.
		force:           newForceLimiter(time.Second, 3, 10_000),
		refreshNeedsDoc: cfg.RefreshNeedsDoc,
		secrets:         readinessSecrets(cfg),
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "reference_issuer_tokens_issued_total",
			Help: "Tokens issued by endpoint."}, []string{"endpoint"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "reference_issuer_requests_failed_total",
			Help: "Requests answered with an error, by endpoint and reason."}, []string{"endpoint", "reason"}),
	}
	reg.MustRegister(s.issued, s.failed)
	s.ready = readiness(cache, cfg.NoticesEnabled, client)
	if cache != nil && cfg.NoticesEnabled {
		s.following = cache.Following
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	srv := &http.Server{Handler: s.routes(reg), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 15 * time.Second}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("http: %w", err)
			cancel()
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		// nats.go closes the connection for good when the server refuses
		// the credentials twice in a row (a password rotated, a JWT
		// expired or revoked): stop, naming the refusal, so that an
		// orchestrator restarts the issuer and the restart fails fast
		// while the credentials stay refused.
		if err := natsconn.Watch(runCtx, nc); err != nil {
			errs <- err
			cancel()
		}
	}()
	if cache != nil && cfg.NoticesEnabled {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Run returns only when ctx ends or the connection is closed
			// for good, which the watch above reports and stops on.
			if err := cache.Run(runCtx); err != nil && !nc.IsClosed() {
				log.Error().Err(err).Msg("notice feed stopped")
			}
		}()
	}
	base := "http://" + strings.Replace(ln.Addr().String(), "[::]", "127.0.0.1", 1)
	log.Info().Str("addr", ln.Addr().String()).Str("jwks", base+"/.well-known/jwks.json").Msg("serving")
	warnLoginTrust(log, ln.Addr())
	if ready != nil {
		ready <- running{URL: base, Cache: cache, JS: js, Registry: reg}
	}
	<-runCtx.Done()
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	cancel()
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	log.Info().Msg("stopped")
	return errors.Join(all...)
}

// readiness is /readyz's check, the bridge's rule: ready while refreshes
// can be answered, that is while the cache follows the notices (it then
// answers the users it holds even through a MongoDB outage) or MongoDB
// answers (the cache reads through, which is correct). A NATS outage or
// no notifier leading does not make it unready: every replica would be
// out at once, and /refresh still works (POST /login answers 503 while
// NATS is away).
func readiness(cache *issuer.Cache, notices bool, client *mongo.Client) func(context.Context) error {
	following := func() bool { return cache != nil && notices && cache.Following() }
	return func(ctx context.Context) error {
		if following() {
			return nil
		}
		err := client.Ping(ctx, readpref.PrimaryPreferred())
		switch {
		case err == nil:
			return nil
		case cache != nil && notices:
			return fmt.Errorf("notices are not followed (the cache reads through) and MongoDB does not answer: %w", err)
		}
		return fmt.Errorf("MongoDB does not answer: %w", err)
	}
}
