package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/internal/demo"
	"github.com/customdata-worker/customdata-worker/internal/mongostandin"
	"github.com/customdata-worker/customdata-worker/worker"
)

// runDemo runs the real worker in-process on an embedded NATS server and
// MongoDB (CUSTOMDATA_MONGODB_URI or MONGODB_URI when set, else the
// in-memory stand-in), then plays the demo scenario against it.
func runDemo(ctx context.Context, cfg Config, stdout, stderr io.Writer) error {
	cfg.NATSEmbedded = true
	if os.Getenv(envPrefix+"_LOG_LEVEL") == "" {
		cfg.LogLevel = "warn"
	}
	if os.Getenv(envPrefix+"_LOG_FORMAT") == "" {
		cfg.LogFormat = "console"
	}
	if os.Getenv(envPrefix+"_HTTP_ADDR") == "" {
		// A busy :8080 must not break a newcomer's first run; set
		// CUSTOMDATA_HTTP_ADDR to look at /metrics during the demo.
		cfg.HTTPAddr = ""
	}
	switch {
	case os.Getenv(envPrefix+"_MONGODB_URI") != "":
	case os.Getenv("MONGODB_URI") != "":
		cfg.MongoURI = os.Getenv("MONGODB_URI")
	default:
		fmt.Fprintln(stdout, "No MONGODB_URI: starting the in-memory MongoDB stand-in (mongo-java-server).")
		s, err := mongostandin.Start(ctx)
		if err != nil {
			return fmt.Errorf("start the MongoDB stand-in (needs Java 17 and `make standin`): %w", err)
		}
		defer s.Close()
		cfg.MongoURI = s.URI()
	}
	_, tc, err := triggerSet(cfg)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)

	workerCtx, stopWorker := context.WithCancel(ctx)
	defer stopWorker()
	type started struct {
		js     jetstream.JetStream
		client *mongo.Client
	}
	ready := make(chan started, 1)
	done := make(chan error, 1)
	go func() {
		done <- runWorker(workerCtx, cfg, log, worker.WithReady(func(js jetstream.JetStream, client *mongo.Client) {
			ready <- started{js, client}
		}))
	}()

	var st started
	select {
	case st = <-ready:
	case err := <-done:
		return fmt.Errorf("worker did not start: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}
	fmt.Fprintf(stdout, "Worker running: embedded NATS, MongoDB collection %s.%s\n", cfg.Database, cfg.Collection)
	if cfg.HTTPAddr != "" {
		fmt.Fprintf(stdout, "Ops endpoints: /livez /readyz /metrics on %s\n", cfg.HTTPAddr)
	}

	demoErr := demo.Run(ctx, demo.Env{
		JS:             st.js,
		Collection:     st.client.Database(cfg.Database).Collection(cfg.Collection),
		UserIDField:    cfg.UserIDField,
		LastLoginField: tc.LastLogin.Field,
		AuthPrefix:     cfg.AuthSubjectPrefix,
		NoticePrefix:   cfg.NoticeSubjectPrefix,
		NoticeStream:   cfg.NoticeStream,
		Out:            stdout,
	})
	stopWorker()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return errors.Join(demoErr, fmt.Errorf("worker: %w", err))
	}
	return demoErr
}
