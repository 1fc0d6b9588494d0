package authsync

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/provision"
)

// Provision makes sure the auth stream, the dead-letter stream and the
// durable consumer exist. In create mode it creates or updates them
// (idempotent); in verify mode it only checks them and fails with an error
// naming every problem.
//
// Each request is bounded (provisionRequestTimeout): nats.go applies its
// default timeout only to a context without a deadline, and the startup
// step that retries Provision would otherwise wait out a lost reply until
// the caller's deadline, however far.
func (a *Consumer) Provision(ctx context.Context) error {
	if a.streams.Mode == provision.Verify {
		return a.verify(ctx)
	}
	rctx, cancel := context.WithTimeout(ctx, provisionRequestTimeout)
	_, err := a.js.CreateOrUpdateStream(rctx, a.authStreamConfig())
	cancel()
	if err != nil {
		return fmt.Errorf("create or update stream %s: %w", a.cfg.Stream, err)
	}
	rctx, cancel = context.WithTimeout(ctx, provisionRequestTimeout)
	_, err = a.js.CreateOrUpdateStream(rctx, a.deadLetterStreamConfig())
	cancel()
	if err != nil {
		return fmt.Errorf("create or update dead-letter stream %s: %w", a.cfg.DeadLetterStream, err)
	}
	rctx, cancel = context.WithTimeout(ctx, provisionRequestTimeout)
	cons, err := a.js.CreateOrUpdateConsumer(rctx, a.cfg.Stream, a.consumerConfig())
	cancel()
	if err != nil {
		return fmt.Errorf("create or update consumer %s on stream %s: %w", a.cfg.Consumer, a.cfg.Stream, err)
	}
	a.setConsumer(cons)
	a.log.Info().Str("dead_letter_stream", a.cfg.DeadLetterStream).Msg("auth streams and consumer provisioned")
	return nil
}

func (a *Consumer) authStreamConfig() jetstream.StreamConfig {
	maxBytes := a.cfg.MaxBytes
	if maxBytes == 0 {
		maxBytes = -1
	}
	return jetstream.StreamConfig{
		Name:        a.cfg.Stream,
		Description: "Authentication events (LOGIN, CREATE, DELETE) for the custom-data worker",
		Subjects:    []string{a.cfg.SubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      a.cfg.MaxAge,
		MaxBytes:    maxBytes,
		// Refuse new events rather than silently dropping unconsumed ones.
		Discard:    jetstream.DiscardNew,
		Replicas:   a.streams.Replicas,
		Duplicates: a.streams.DuplicateWindow,
	}
}

func (a *Consumer) deadLetterStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        a.cfg.DeadLetterStream,
		Description: "Auth events the custom-data worker could not process",
		Subjects:    []string{a.cfg.DeadLetterPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      max(a.cfg.DeadLetterMaxAge, 0), // KeepDeadLettersForever: no limit
		MaxBytes:    -1,
		Replicas:    a.streams.Replicas,
		Duplicates:  a.streams.DuplicateWindow,
	}
}

func (a *Consumer) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       a.cfg.Consumer,
		Description:   "custom-data worker: applies auth-event triggers to MongoDB",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       a.cfg.AckWait,
		// Unlimited on the server: the worker dead-letters at MaxDeliver
		// itself, so a message is never dropped when that publish fails.
		MaxDeliver:      -1,
		MaxAckPending:   a.cfg.MaxAckPending,
		FilterSubject:   a.cfg.SubjectPrefix + ".>",
		ReplayPolicy:    jetstream.ReplayInstantPolicy,
		MaxRequestBatch: a.cfg.BatchSize,
		Replicas:        0, // inherit from the stream
	}
}

// verify checks operator-provisioned resources.
func (a *Consumer) verify(ctx context.Context) error {
	var missing, incompatible []string
	authSubjects := events.AuthSubjects(a.cfg.SubjectPrefix)

	rctx, cancel := context.WithTimeout(ctx, provisionRequestTimeout) // as in Provision
	stream, err := a.js.Stream(rctx, a.cfg.Stream)
	cancel()
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		missing = append(missing, fmt.Sprintf("stream %s does not exist", a.cfg.Stream))
	case err != nil:
		return fmt.Errorf("verify stream %s: %w", a.cfg.Stream, err)
	default:
		cfg := stream.CachedInfo().Config
		for _, s := range authSubjects {
			if !events.AnyMatches(cfg.Subjects, s) {
				incompatible = append(incompatible, fmt.Sprintf("stream %s does not capture subject %s (subjects %v)", a.cfg.Stream, s, cfg.Subjects))
			}
		}
		if cfg.Duplicates <= 0 {
			incompatible = append(incompatible, fmt.Sprintf("stream %s has no duplicate window; event ids would not be de-duplicated", a.cfg.Stream))
		}
		if cfg.Retention == jetstream.InterestPolicy {
			incompatible = append(incompatible, fmt.Sprintf("stream %s uses interest retention; events published while the consumer is absent could be lost", a.cfg.Stream))
		}
	}

	rctx, cancel = context.WithTimeout(ctx, provisionRequestTimeout)
	dlq, err := a.js.Stream(rctx, a.cfg.DeadLetterStream)
	cancel()
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		missing = append(missing, fmt.Sprintf("dead-letter stream %s does not exist", a.cfg.DeadLetterStream))
	case err != nil:
		return fmt.Errorf("verify dead-letter stream %s: %w", a.cfg.DeadLetterStream, err)
	default:
		cfg := dlq.CachedInfo().Config
		probe := a.cfg.DeadLetterPrefix + "." + events.DeadLetterMaxDeliver
		if !events.AnyMatches(cfg.Subjects, probe) {
			incompatible = append(incompatible, fmt.Sprintf("dead-letter stream %s does not capture %s.> (subjects %v)", a.cfg.DeadLetterStream, a.cfg.DeadLetterPrefix, cfg.Subjects))
		}
	}

	var cons jetstream.Consumer
	if stream != nil {
		rctx, cancel := context.WithTimeout(ctx, provisionRequestTimeout)
		cons, err = stream.Consumer(rctx, a.cfg.Consumer)
		cancel()
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			missing = append(missing, fmt.Sprintf("consumer %s on stream %s does not exist", a.cfg.Consumer, a.cfg.Stream))
			cons = nil
		case err != nil:
			return fmt.Errorf("verify consumer %s: %w", a.cfg.Consumer, err)
		default:
			incompatible = append(incompatible, a.checkConsumer(cons.CachedInfo().Config, authSubjects)...)
		}
	}

	if len(missing) > 0 {
		return fmt.Errorf("%w (provision mode is verify): %s; create them or use provision mode %q",
			ErrNotProvisioned, strings.Join(append(missing, incompatible...), "; "), provision.Create)
	}
	if len(incompatible) > 0 {
		return fmt.Errorf("%w: %s", ErrIncompatibleProvisioning, strings.Join(incompatible, "; "))
	}
	a.setConsumer(cons)
	a.log.Info().Msg("auth streams and consumer verified")
	return nil
}

func (a *Consumer) checkConsumer(cfg jetstream.ConsumerConfig, authSubjects []string) []string {
	var problems []string
	name := "consumer " + a.cfg.Consumer
	if cfg.DeliverSubject != "" {
		problems = append(problems, name+" is a push consumer; a pull consumer is required")
	}
	if cfg.AckPolicy != jetstream.AckExplicitPolicy {
		problems = append(problems, fmt.Sprintf("%s has ack policy %s; explicit is required", name, cfg.AckPolicy))
	}
	filters := cfg.FilterSubjects
	if cfg.FilterSubject != "" {
		filters = append(filters, cfg.FilterSubject)
	}
	if len(filters) > 0 {
		for _, s := range authSubjects {
			if !events.AnyMatches(filters, s) {
				problems = append(problems, fmt.Sprintf("%s filters out subject %s (filters %v)", name, s, filters))
			}
		}
	}
	if cfg.MaxDeliver > 0 && cfg.MaxDeliver <= a.cfg.MaxDeliver {
		problems = append(problems, fmt.Sprintf("%s has max_deliver %d; it must be unlimited (-1) or above the worker's MaxDeliver (%d), or the server drops messages the worker would dead-letter",
			name, cfg.MaxDeliver, a.cfg.MaxDeliver))
	}
	if cfg.MaxAckPending > 0 && cfg.MaxAckPending < a.cfg.BatchSize {
		problems = append(problems, fmt.Sprintf("%s has max_ack_pending %d, below the batch size %d", name, cfg.MaxAckPending, a.cfg.BatchSize))
	}
	if cfg.MaxAckPending < 0 {
		problems = append(problems, name+" has unlimited max_ack_pending; it must be bounded")
	}
	if cfg.MaxRequestBatch > 0 && cfg.MaxRequestBatch < a.cfg.BatchSize {
		problems = append(problems, fmt.Sprintf("%s has max_batch %d, below the batch size %d", name, cfg.MaxRequestBatch, a.cfg.BatchSize))
	}
	if len(cfg.BackOff) > 0 {
		problems = append(problems, name+" has a server-side backoff, which overrides ack wait for in-flight batches; remove it (the worker applies BackOff to its Naks)")
	}
	return problems
}
