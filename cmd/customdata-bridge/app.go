package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"golang.org/x/sync/errgroup"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/bridge"
	"github.com/customdata-worker/customdata-worker/internal/bridge/apikey"
	"github.com/customdata-worker/customdata-worker/internal/bridge/ingest"
	"github.com/customdata-worker/customdata-worker/internal/bridge/webhook"
	"github.com/customdata-worker/customdata-worker/internal/buildinfo"
	"github.com/customdata-worker/customdata-worker/internal/cli"
	"github.com/customdata-worker/customdata-worker/internal/natsconn"
	"github.com/customdata-worker/customdata-worker/internal/ops"
	"github.com/customdata-worker/customdata-worker/internal/redact"
	"github.com/customdata-worker/customdata-worker/internal/retry"
	"github.com/customdata-worker/customdata-worker/issuer"
)

const appName = "customdata-bridge"

// httpWriteTimeout bounds writing one answer; INGEST_TIMEOUT must end
// before it, so a 503 still reaches the sender.
const httpWriteTimeout = 15 * time.Second

func newLogger(cfg Config, w io.Writer) zerolog.Logger {
	return cli.NewLogger(w, appName, cfg.LogLevel, cfg.LogFormat)
}

// running is what runBridge hands to a caller that embeds it (the tests).
type running struct {
	URL      string        // base URL of the hooks
	Cache    *issuer.Cache // nil when the cache is off
	Registry *prometheus.Registry
}

// runBridge wires the bridge and serves until ctx ends, or until NATS
// closes the connection for good (natsconn.ClosedError):
//
//	hook call → bridge.Server → issuer.Cache (kept fresh by notices) → MongoDB on a miss
//	Supabase sign-in, Hydra login grant → events.Publisher (LOGIN), when enabled
//	identity server's webhook → ingest.Server → events.Publisher (auth event) or the dead-letter stream
func runBridge(ctx context.Context, cfg Config, log zerolog.Logger, ready chan<- running) error {
	log.Info().Str("mongodb", redact.URI(cfg.MongoURI)).Str("nats", redact.URIs(cfg.NATSURL)).
		Str("collection", cfg.Database+"."+cfg.Collection).Bool("notices", cfg.NoticesEnabled).
		Int("cache_entries", cfg.CacheMaxEntries).Dur("cache_ttl", cfg.CacheTTL).
		Bool("supabase", cfg.SupabaseSecrets != "").Bool("hydra", len(cfg.HydraAPIKeys) > 0).Bool("generic", cfg.genericEnabled()).
		Bool("supabase_logins", cfg.SupabasePublishLogin).Bool("hydra_logins", cfg.HydraPublishLogin).Bool("clerk", cfg.ClerkSecrets != "").
		Bool("kratos", len(cfg.KratosAPIKeys)+len(cfg.KratosBasicAuth) > 0).Bool("auth0", len(cfg.Auth0Authorization) > 0).Msg("starting")

	// The ops endpoints answer from the start: /livez says the process
	// lives while NATS does not answer yet (a liveness probe must not
	// restart it in a loop through an outage), /readyz says what startup
	// waits for.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildinfo.Collector("customdata_bridge", buildinfo.Read()))
	state := &readyState{}
	state.step.Store("connect to NATS")
	opsCtx, stopOps := context.WithCancel(ctx)
	opsDone := make(chan error, 1)
	if cfg.OpsAddr != "" {
		go func() { opsDone <- ops.NewServer(cfg.OpsAddr, reg, log, state.checks(cfg)...).Run(opsCtx) }()
	} else {
		opsDone <- nil
	}
	defer func() {
		stopOps()
		if err := <-opsDone; err != nil {
			log.Error().Err(err).Msg("ops endpoints stopped with an error")
		}
	}()

	var nc *nats.Conn
	var js jetstream.JetStream
	if cfg.needsNATS() {
		var err error
		nc, err = connectNATS(ctx, cfg, log)
		if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			log.Info().Msg("stopped before NATS answered")
			return nil
		}
		if err != nil {
			return fmt.Errorf("NATS: %w", err)
		}
		defer nc.Close()
		if js, err = jetstream.New(nc); err != nil {
			return fmt.Errorf("JetStream: %w", err)
		}
	}
	var pub *events.Publisher
	if cfg.publishes() {
		var err error
		if pub, err = newPublisher(cfg, js, log); err != nil {
			return err
		}
	}

	mux := http.NewServeMux()
	var client *mongo.Client
	var cache *issuer.Cache
	var srv *bridge.Server
	if cfg.hooksEnabled() {
		var err error
		client, err = mongo.Connect(options.Client().ApplyURI(cfg.MongoURI).SetAppName(appName))
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
		var data issuer.Getter = src
		if cfg.CacheMaxEntries > 0 {
			opts := []issuer.CacheOption{issuer.WithLogger(log)}
			if cfg.NoticesEnabled {
				opts = append(opts, issuer.WithNotices(js, issuer.NoticeConfig{SubjectPrefix: cfg.NoticeSubjectPrefix, Stream: cfg.NoticeStream, LeaderTimeout: cfg.LeaderTimeout}))
			}
			// A read nobody waits for any more is not worth finishing.
			ccfg := issuer.CacheConfig{MaxEntries: cfg.CacheMaxEntries, TTL: cfg.CacheTTL, ReadTimeout: cfg.HookTimeout}
			if cache, err = issuer.NewCache(src, ccfg, opts...); err != nil {
				return err
			}
			reg.MustRegister(cache.Collectors()...)
			data = cache
		}
		if srv, err = newServer(cfg, data, pub, log); err != nil {
			return err
		}
		reg.MustRegister(srv.Collectors()...)
		// Every path the ingest endpoints do not claim: the hooks'.
		mux.Handle("/", srv.Handler())
	}
	if cfg.ingestEnabled() {
		in, err := newIngest(cfg, pub, js, log)
		if err != nil {
			return err
		}
		reg.MustRegister(in.Collectors()...)
		in.Register(mux)
	}

	// Read before listening: validate read the files too, but they may
	// have changed since.
	tlsCfg, err := cfg.serverTLS()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: httpWriteTimeout, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		TLSConfig: tlsCfg, ErrorLog: stdlog.New(httpErrorLog{log}, "", 0)}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		serve := func() error { return hs.Serve(ln) }
		if tlsCfg != nil {
			serve = func() error { return hs.ServeTLS(ln, "", "") } // the certificate is in TLSConfig
		}
		if err := serve(); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("hooks: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return hs.Shutdown(sctx)
	})
	if srv != nil {
		g.Go(func() error { return srv.Run(gctx) })
	}
	if nc != nil {
		// nats.go closes the connection for good when the server refuses
		// the credentials twice in a row (a password rotated, a JWT
		// expired or revoked): stop, naming the refusal, so that an
		// orchestrator restarts the bridge and the restart fails fast
		// while the credentials stay refused.
		g.Go(func() error { return natsconn.Watch(gctx, nc) })
	}
	if cache != nil && cfg.NoticesEnabled {
		g.Go(func() error {
			// Run returns only when ctx ends or the connection is closed
			// for good, which the watch above reports and stops on.
			if err := cache.Run(gctx); err != nil && !nc.IsClosed() {
				log.Error().Err(err).Msg("notice feed stopped")
			}
			return nil
		})
	}
	state.started(cache, cfg.NoticesEnabled, client, nc, cfg.ingestEnabled())
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	base := scheme + "://" + strings.Replace(ln.Addr().String(), "[::]", "127.0.0.1", 1)
	log.Info().Str("addr", ln.Addr().String()).Bool("tls", tlsCfg != nil).Bool("client_certs", cfg.TLSClientCAFile != "").Msg("serving hooks")
	if ready != nil {
		ready <- running{URL: base, Cache: cache, Registry: reg}
	}
	err = g.Wait()
	if nc != nil && nc.IsClosed() && ctx.Err() == nil {
		// Whatever stopped first, the cause is the client's last error.
		err = natsconn.ClosedError(nc)
	}
	log.Info().Msg("stopped")
	return err
}

// newPublisher is the events.Publisher of every auth event the bridge
// publishes, signed when EVENT_SIGNING_SEED_FILE is set.
func newPublisher(cfg Config, js jetstream.JetStream, log zerolog.Logger) (*events.Publisher, error) {
	opts := []events.PublisherOption{events.WithSubjectPrefix(cfg.AuthSubjectPrefix)}
	if cfg.EventSigningSeed != "" {
		signer, err := events.LoadSigner(cfg.EventSigningSeed)
		if err != nil {
			return nil, fmt.Errorf("%s_EVENT_SIGNING_SEED_FILE: %w", envPrefix, err)
		}
		opts = append(opts, events.WithSigner(signer))
		log.Info().Str("signer", signer.PublicKey()).Msg("auth events are signed")
	}
	return events.NewPublisher(js, opts...)
}

// newServer builds the hooks that are configured.
func newServer(cfg Config, data issuer.Getter, pub *events.Publisher, log zerolog.Logger) (*bridge.Server, error) {
	opts := []bridge.Option{bridge.WithLogger(log)}
	if cfg.SupabaseSecrets != "" {
		v, err := webhook.NewVerifier(webhook.ParseSecretList(cfg.SupabaseSecrets))
		if err != nil {
			return nil, fmt.Errorf("%s_SUPABASE_HOOK_SECRETS: %w", envPrefix, err)
		}
		opts = append(opts, bridge.WithSupabase(v))
	}
	if cfg.SupabasePublishLogin || cfg.HydraPublishLogin {
		opts = append(opts, bridge.WithLogins(pub, bridge.LoginConfig{Supabase: cfg.SupabasePublishLogin, Hydra: cfg.HydraPublishLogin}))
	}
	if len(cfg.HydraAPIKeys) > 0 {
		opts = append(opts, bridge.WithHydra(bridge.HydraAuth{Header: cfg.HydraAuthHeader, Keys: cfg.HydraAPIKeys}, cfg.HydraIDToken))
	}
	if len(cfg.APITokens) > 0 {
		opts = append(opts, bridge.WithGeneric(cfg.APITokens))
	}
	if cfg.TLSClientCAFile != "" {
		opts = append(opts, bridge.WithGenericClientCerts(cfg.GenericClientNames))
	}
	return bridge.New(data, cfg.bridgeConfig(), opts...)
}

// newIngest builds the ingest endpoints that are configured.
func newIngest(cfg Config, pub *events.Publisher, js jetstream.JetStream, log zerolog.Logger) (*ingest.Server, error) {
	opts := []ingest.Option{ingest.WithLogger(log)}
	if cfg.ClerkSecrets != "" {
		v, err := webhook.NewVerifier(webhook.ParseSecretList(cfg.ClerkSecrets))
		if err != nil {
			return nil, fmt.Errorf("%s_CLERK_WEBHOOK_SECRETS: %w", envPrefix, err)
		}
		opts = append(opts, ingest.WithClerk(v))
	}
	if len(cfg.KratosAPIKeys) > 0 || len(cfg.KratosBasicAuth) > 0 {
		var auth ingest.KratosAuth
		if len(cfg.KratosAPIKeys) > 0 {
			k, err := apikey.NewHeaderKey(cfg.KratosAuthHeader, cfg.KratosAPIKeys)
			if err != nil {
				return nil, fmt.Errorf("%s_KRATOS_API_KEYS: %w", envPrefix, err)
			}
			auth.APIKey = &k
		}
		if len(cfg.KratosBasicAuth) > 0 {
			b, err := apikey.NewBasic(cfg.KratosBasicAuth)
			if err != nil {
				return nil, fmt.Errorf("%s_KRATOS_BASIC_AUTH: %w", envPrefix, err)
			}
			auth.Basic = &b
		}
		opts = append(opts, ingest.WithKratos(auth))
	}
	if len(cfg.Auth0Authorization) > 0 {
		set, err := apikey.NewSet(cfg.Auth0Authorization)
		if err != nil {
			return nil, fmt.Errorf("%s_AUTH0_AUTHORIZATION: %w", envPrefix, err)
		}
		opts = append(opts, ingest.WithAuth0(set))
	}
	return ingest.New(pub, js, cfg.ingestConfig(), opts...)
}

// readyState is what /readyz reports: the startup step until the hooks
// serve, then whether hook calls can be answered.
type readyState struct {
	step atomic.Value // string: what startup waits for
	data atomic.Pointer[func() error]
}

// started records that the endpoints serve: the hooks read custom data
// from cache (nil when off, following notices if notices) or MongoDB
// (client nil: no hooks), the ingest endpoints (if ingest) publish on nc.
func (s *readyState) started(cache *issuer.Cache, notices bool, client *mongo.Client, nc *nats.Conn, ingest bool) {
	check := func() error {
		if client == nil {
			// Ingest only: nothing to serve without NATS (senders get
			// 503 and retry). Beside the hooks, a NATS outage must not
			// take the replica out: the hooks still answer, and the ingest
			// endpoints answer 503 on their own.
			if ingest && !nc.IsConnected() {
				return errors.New("NATS is not connected: auth events cannot be published")
			}
			return nil
		}
		// A cache kept fresh by notices answers the users it holds
		// even while MongoDB is down: the replica stays in service (every
		// replica would be out at once otherwise) and answers the others
		// with the hook's documented failure.
		if cache != nil && notices && cache.Following() {
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := client.Ping(ctx, readpref.Primary()); err != nil {
			if cache != nil && notices {
				return fmt.Errorf("notices are not followed (the cache reads through) and MongoDB does not answer: %w", err)
			}
			return fmt.Errorf("MongoDB does not answer: %w", err)
		}
		return nil
	}
	s.data.Store(&check)
}

// checks are the /readyz checks, with secrets cut from their errors.
func (s *readyState) checks(cfg Config) []ops.Check {
	secrets := append(append(redact.Secrets(cfg.MongoURI), redact.SecretsOfURIs(cfg.NATSURL)...), cfg.NATSToken, cfg.NATSPassword)
	return []ops.Check{
		{Name: "startup", Check: func() error {
			if s.data.Load() == nil {
				return fmt.Errorf("waiting to %v", s.step.Load())
			}
			return nil
		}},
		{Name: "serving", Check: func() error {
			check := s.data.Load()
			if check == nil {
				return errors.New("not serving yet")
			}
			return redact.Err((*check)(), secrets...)
		}},
	}
}

// connectNATS connects as the worker does: retried with backoff while no
// server answers (the first failure logged once), stopped at a refusal
// (credentials, TLS, an unusable file), which retrying would only hide.
func connectNATS(ctx context.Context, cfg Config, log zerolog.Logger) (*nats.Conn, error) {
	return retry.Forever(ctx, retry.NewBackOff(500*time.Millisecond, 10*time.Second), func() (*nats.Conn, error) {
		nc, err := natsconn.Connect(cfg.natsConfig(), log)
		if natsconn.Refused(err) {
			return nil, retry.Stop(err)
		}
		return nc, err
	}, func(err error, first bool) {
		if first {
			log.Warn().Err(err).Str("step", "connect to NATS").Msg("dependency unavailable; retrying with backoff")
		}
	})
}

// httpErrorLog takes net/http's own messages. Refused TLS handshakes
// (scanners, clients with a certificate of another CA) go to debug, so
// that they cannot flood the log; everything else net/http reports (a
// handler's panic with its stack, accept errors) is a warning.
type httpErrorLog struct{ log zerolog.Logger }

func (w httpErrorLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	ev := w.log.Warn()
	if strings.HasPrefix(msg, "http: TLS handshake error") {
		ev = w.log.Debug()
	}
	ev.Str("component", "http").Msg(msg)
	return len(p), nil
}
