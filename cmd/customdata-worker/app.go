package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/internal/embeddednats"
	"github.com/customdata-worker/customdata-worker/triggers"
	"github.com/customdata-worker/customdata-worker/worker"
	"github.com/customdata-worker/customdata-worker/worker/authsync"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
	"github.com/customdata-worker/customdata-worker/worker/notify"
)

const appName = "customdata-worker"

func newLogger(cfg Config, w io.Writer) zerolog.Logger {
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil || level == zerolog.NoLevel {
		level = zerolog.InfoLevel
	}
	if cfg.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Str("app", appName).Logger()
}

// triggerSet builds the trigger set from the trigger file (or defaults).
func triggerSet(cfg Config) (*triggers.Set, triggers.Config, error) {
	tc := triggers.DefaultConfig()
	if cfg.TriggersFile != "" {
		var err error
		if tc, err = triggers.LoadConfig(cfg.TriggersFile); err != nil {
			return nil, tc, err
		}
	}
	if tc.UserIDField == "" {
		tc.UserIDField = cfg.UserIDField
	}
	if tc.UserIDField != cfg.UserIDField {
		return nil, tc, fmt.Errorf("trigger file says userIdField %q but %s_USER_ID_FIELD is %q", tc.UserIDField, envPrefix, cfg.UserIDField)
	}
	set, err := triggers.NewSet(tc)
	return set, tc, err
}

// workerConfig maps the environment onto worker.Config.
func (c Config) workerConfig(set *triggers.Set) worker.Config {
	return worker.Config{
		MongoURI: c.MongoURI,
		NATS: worker.NATSConfig{
			URL: c.NATSURL, Name: appName,
			User: c.NATSUser, Password: c.NATSPassword, Token: c.NATSToken,
			NKeySeedFile: c.NATSNKeySeedFile, CredsFile: c.NATSCredsFile,
			TLSCAFile: c.NATSTLSCA, TLSCertFile: c.NATSTLSCert, TLSKeyFile: c.NATSTLSKey,
		},
		HTTPAddr: c.HTTPAddr,
		Data: customdata.Config{
			Database: c.Database, Collection: c.Collection, UserIDField: c.UserIDField,
			WriteConcern: c.WriteConcern, WriteTimeout: c.WriteTimeout, AllowDuplicates: c.AllowDuplicates,
		},
		Auth: authsync.Config{
			Stream: c.AuthStream, SubjectPrefix: c.AuthSubjectPrefix, MaxAge: c.AuthMaxAge, MaxBytes: c.AuthMaxBytes,
			Replicas: c.StreamReplicas, DuplicateWindow: c.DuplicateWindow, Consumer: c.AuthConsumer,
			AckWait: c.AckWait, MaxAckPending: c.MaxAckPending, MaxDeliver: c.MaxDeliver, BackOff: c.RedeliveryBackoff,
			BatchSize: c.BatchSize, BatchWait: c.BatchWait, DeadLetterStream: c.DeadLetterStream,
			DeadLetterPrefix: c.DeadLetterPrefix, DeadLetterMaxAge: c.DeadLetterMaxAge, Provision: c.Provision,
		},
		Notices: c.NoticesEnabled,
		Notify: notify.Config{
			SubjectPrefix: c.NoticeSubjectPrefix, Stream: c.NoticeStream, MaxAge: c.NoticeMaxAge,
			DuplicateWindow: c.DuplicateWindow, Replicas: c.StreamReplicas, Provision: c.Provision,
			LeaseTTL: c.LeaseTTL, StallAfter: c.StallAfter, OversizeBytes: c.OversizeBytes,
			Database: c.Database, Collection: c.Collection, UserIDField: c.UserIDField,
			PreAndPostImages: c.PreAndPostImages,
		},
		Triggers: set,
	}
}

// checkConfig validates everything that can be checked without servers.
func checkConfig(cfg Config) error {
	set, _, err := triggerSet(cfg)
	if err != nil {
		return fmt.Errorf("triggers: %w", err)
	}
	return cfg.workerConfig(set).Validate()
}

// startEmbeddedNATS runs a dev NATS server in the process and points cfg at it.
func startEmbeddedNATS(cfg *Config, log zerolog.Logger) (*server.Server, func(), error) {
	dir, cleanup := cfg.NATSEmbeddedDir, func() {}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "customdata-nats-*")
		if err != nil {
			return nil, nil, err
		}
		dir, cleanup = tmp, func() { _ = os.RemoveAll(tmp) }
	}
	s, err := embeddednats.Start(embeddednats.Options{StoreDir: dir})
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	cfg.NATSURL = s.ClientURL()
	log.Warn().Str("url", cfg.NATSURL).Str("store", dir).Msg("running an embedded NATS server: for development only")
	return s, func() { s.Shutdown(); s.WaitForShutdown(); cleanup() }, nil
}

// started is what runWorker hands to a caller that embeds it (the demo).
type started struct {
	js     jetstream.JetStream
	client *mongo.Client
}

// runWorker runs the worker (worker.Run) on cfg until ctx ends. If ready
// is not nil it receives the connections once everything is provisioned.
func runWorker(ctx context.Context, cfg Config, log zerolog.Logger, ready chan<- started) error {
	return runWorkerTuned(ctx, cfg, log, ready, nil)
}

// runWorkerTuned is runWorker with a hook on the custom-data settings that
// the environment does not expose (tests shorten IndexTimeout).
func runWorkerTuned(ctx context.Context, cfg Config, log zerolog.Logger, ready chan<- started,
	tune func(*customdata.Config)) error {
	set, _, err := triggerSet(cfg)
	if err != nil {
		return fmt.Errorf("triggers: %w", err)
	}
	if cfg.NATSEmbedded {
		_, shutdown, err := startEmbeddedNATS(&cfg, log)
		if err != nil {
			return err
		}
		defer shutdown()
	}
	wc := cfg.workerConfig(set)
	if tune != nil {
		tune(&wc.Data)
	}
	var onReady func(jetstream.JetStream, *mongo.Client)
	if ready != nil {
		onReady = func(js jetstream.JetStream, client *mongo.Client) { ready <- started{js: js, client: client} }
	}
	return worker.Run(ctx, wc, log, onReady)
}
