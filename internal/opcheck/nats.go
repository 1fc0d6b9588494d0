package opcheck

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/internal/outage"
	"github.com/customdata-worker/customdata-worker/internal/provision"
	"github.com/customdata-worker/customdata-worker/internal/redact"
	"github.com/customdata-worker/customdata-worker/worker"
	"github.com/customdata-worker/customdata-worker/worker/authsync"
	"github.com/customdata-worker/customdata-worker/worker/notify"
)

func checkNATS(ctx context.Context, cfg Config, client *mongo.Client, r *Report) {
	w := cfg.Worker
	nc, err := connectNATS(w)
	if err != nil {
		r.add("NATS", Fail, "%s", natsConnectProblem(err))
		r.add("JetStream", Skipped, "NATS is not connected")
		return
	}
	defer nc.Close()
	r.add("NATS", OK, "connected to %s (server %s %s)", redact.URI(nc.ConnectedUrl()), nc.ConnectedServerName(), nc.ConnectedServerVersion())

	js, err := jetstream.New(nc)
	if err != nil {
		r.add("JetStream", Fail, "%v", err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	info, err := js.AccountInfo(cctx)
	switch {
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		r.add("JetStream", Fail, "not enabled for this account: %v (run nats-server with -js / jetstream {} in its configuration)", err)
		return
	case err != nil:
		r.add("JetStream", Fail, "account info: %v", err)
		return
	}
	r.add("JetStream", OK, "enabled (%d streams, %d consumers in the account)", info.Streams, info.Consumers)

	// The comparison PROVISION=verify makes at startup, run as is.
	verify := w.Streams
	verify.Mode = provision.Verify
	nop := zerolog.Nop()
	consumer, err := authsync.New(js, collection(w, client), w.Triggers, w.Auth, authsync.WithData(w.Data), authsync.WithStreams(verify), authsync.WithLogger(nop))
	if err == nil {
		err = consumer.Provision(cctx)
	}
	judgeProvisioning(r, "auth-event streams and consumer", fmt.Sprintf("streams %s, %s and consumer %s", w.Auth.Stream, w.Auth.DeadLetterStream, w.Auth.Consumer), w.Streams.Mode, err)

	if !w.Notices {
		return
	}
	nc2 := w.Notify
	nc2.PreAndPostImages = false // checked on MongoDB below; verification must not collMod
	db := collection(w, client).Database()
	notifier, err := notify.New(js, db, nc2, notify.WithData(w.Data), notify.WithStreams(verify), notify.WithLogger(nop))
	if err == nil {
		err = notifier.Provision(cctx)
	}
	judgeProvisioning(r, "notice stream and buckets", fmt.Sprintf("stream %s, buckets %s and %s", w.Notify.Stream, w.Notify.CheckpointBucket, w.Notify.LeaseBucket), w.Streams.Mode, err)
}

// judgeProvisioning: with PROVISION=create the worker creates or updates
// what is missing or different at startup, so only a refusal or an
// unreachable server fails; with verify every difference does.
func judgeProvisioning(r *Report, name, what string, mode provision.Mode, err error) {
	switch {
	case err == nil:
		r.add(name, OK, "%s present with compatible settings", what)
	case mode == provision.Create && !outage.NATS(err) && !errors.Is(err, nats.ErrPermissionViolation) && !errors.Is(err, nats.ErrAuthorization):
		r.add(name, Warn, "the worker creates or updates them at startup (PROVISION=create); as PROVISION=verify sees them: %v", err)
	default:
		r.add(name, Fail, "%v", err)
	}
}

// natsConnectProblem names the failure class of a failed connect.
func natsConnectProblem(err error) string {
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked):
		return fmt.Sprintf("authentication refused (check CUSTOMDATA_NATS_USER/PASSWORD, TOKEN, NKEY_SEED_FILE or CREDS_FILE): %v", err)
	case errors.Is(err, nats.ErrNoServers):
		return fmt.Sprintf("unreachable: %v", err)
	}
	return err.Error()
}

// connectNATS connects as the worker does, without its reconnect
// logging: a check reports, it does not log.
func connectNATS(w worker.Config) (*nats.Conn, error) {
	return worker.ConnectNATS(w.NATS, zerolog.Nop())
}
