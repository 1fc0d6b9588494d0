package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/cli"
	"github.com/customdata-worker/customdata-worker/triggers"
	"github.com/customdata-worker/customdata-worker/worker"
	"github.com/customdata-worker/customdata-worker/worker/authsync"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
	"github.com/customdata-worker/customdata-worker/worker/notify"
)

const appName = "customdata-worker"

func newLogger(cfg Config, w io.Writer) zerolog.Logger {
	return cli.NewLogger(w, appName, cfg.LogLevel, cfg.LogFormat)
}

// workerConfig maps the environment onto worker.Config, each setting once.
func (c Config) workerConfig(set *triggers.Set) worker.Config {
	return worker.Config{
		MongoURI: c.MongoURI, HTTPAddr: c.HTTPAddr, Notices: c.NoticesEnabled, Triggers: set,
		NATS: c.Env.Config(appName),
		Data: customdata.Config{Database: c.Database, Collection: c.Collection, UserIDField: c.UserIDField,
			WriteConcern: c.WriteConcern, WriteTimeout: c.WriteTimeout, AllowDuplicates: c.AllowDuplicates},
		Streams: worker.Streams{Mode: worker.ProvisionMode(c.Provision), Replicas: c.StreamReplicas, DuplicateWindow: c.DuplicateWindow},
		Auth: authsync.Config{Stream: c.AuthStream, SubjectPrefix: c.AuthSubjectPrefix, MaxAge: c.AuthMaxAge, MaxBytes: c.AuthMaxBytes,
			Consumer: c.AuthConsumer, AckWait: c.AckWait, MaxAckPending: c.MaxAckPending, MaxDeliver: c.MaxDeliver,
			BackOff: c.RedeliveryBackoff, BatchSize: c.BatchSize, BatchWait: c.BatchWait, CoalesceWindow: c.CoalesceWindow,
			DeadLetterStream: c.DeadLetterStream, DeadLetterPrefix: c.DeadLetterPrefix, DeadLetterMaxAge: deadLetterMaxAge(c.DeadLetterMaxAge),
			TrustedSigners: []events.TrustedSigner(c.TrustedSigners)},
		Notify: notify.Config{SubjectPrefix: c.NoticeSubjectPrefix, Stream: c.NoticeStream, MaxAge: c.NoticeMaxAge,
			LeaseTTL: c.LeaseTTL, StallAfter: c.StallAfter, OversizeBytes: c.OversizeBytes, PreAndPostImages: c.PreAndPostImages,
			IgnoreFields: c.NoticeIgnoreFields, Partitions: c.NotifierPartitions},
	}
}

// deadLetterMaxAge maps DLQ_MAX_AGE=0 ("until an operator removes them")
// onto the package's setting for it; unset means the package's default.
func deadLetterMaxAge(d time.Duration) time.Duration {
	if d == 0 {
		return authsync.KeepDeadLettersForever
	}
	return d
}

// runWorker runs the worker on cfg until ctx ends; opts reach worker.New.
func runWorker(ctx context.Context, cfg Config, log zerolog.Logger, opts ...worker.Option) error {
	set, _, err := triggerSet(cfg)
	if err != nil {
		return fmt.Errorf("triggers: %w", err)
	}
	if cfg.NATSEmbedded {
		shutdown, err := startEmbeddedNATS(&cfg, log)
		if err != nil {
			return err
		}
		defer shutdown()
	}
	w, err := worker.New(cfg.workerConfig(set), append([]worker.Option{worker.WithLogger(log)}, opts...)...)
	if err != nil {
		return err
	}
	return w.Run(ctx)
}
