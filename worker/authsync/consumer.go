package authsync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/outage"
	"github.com/customdata-worker/customdata-worker/internal/provision"
	"github.com/customdata-worker/customdata-worker/internal/retry"
	"github.com/customdata-worker/customdata-worker/triggers"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

// Consumer consumes auth events from JetStream, runs the triggers and
// applies their writes to the custom-data collection. A message is acked
// only after MongoDB acknowledged its writes with the configured write
// concern; one that cannot be processed is dead-lettered, never dropped.
type Consumer struct {
	cfg     Config
	streams provision.Streams
	js      jetstream.JetStream
	// writer applies the triggers' writes: a *customdata.Writer, or a
	// scripted one in unit tests of the batch logic.
	writer  Writes
	data    customdata.Config
	set     *triggers.Set
	decoder events.Decoder
	// verifier checks signatures when TrustedSigners are configured.
	verifier *events.Verifier
	dlq      *deadLetterer
	log      zerolog.Logger
	metrics  *authMetrics
	health   authHealth
	// holds keeps a user's later events behind its events sent back for
	// redelivery, across batches.
	holds *userHolds

	mu       sync.Mutex
	consumer jetstream.Consumer
	// ackWait is the consumer's actual AckWait (it may differ from the
	// config in verify mode); in-progress acks are sent well within it.
	ackWait time.Duration
}

// Writes is what the consumer needs of the custom-data collection
// (*customdata.Writer).
type Writes interface {
	// Check refuses a write no trigger may make (permanent).
	Check(triggers.Write) error
	// Apply applies one round of writes and says how each failed.
	Apply(ctx context.Context, writes []triggers.Write) ([]customdata.Fault, []error)
}

// Option configures a Consumer beyond its Config (see New).
type Option func(*consumerOptions) error

type consumerOptions struct {
	data    customdata.Config
	streams provision.Streams
	log     zerolog.Logger
	reg     prometheus.Registerer
}

// WithData describes the collection the consumer writes to (default:
// customdata.Config's defaults): its user-id field and write rules.
func WithData(data customdata.Config) Option {
	return func(o *consumerOptions) error { o.data = data; return nil }
}

// WithStreams sets the JetStream settings the consumer shares with the
// notifier (provision mode, replicas, duplicate window).
func WithStreams(streams provision.Streams) Option {
	return func(o *consumerOptions) error { o.streams = streams; return nil }
}

// WithLogger logs to log (default: nothing).
func WithLogger(log zerolog.Logger) Option {
	return func(o *consumerOptions) error { o.log = log; return nil }
}

// WithRegisterer registers the consumer's metrics on reg (default: none).
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(o *consumerOptions) error { o.reg = reg; return nil }
}

// New validates the configuration and builds a consumer of the auth
// events on js that runs set and writes to coll (the collection WithData
// describes). It does no IO: call Provision, then Run.
func New(js jetstream.JetStream, coll *mongo.Collection, set *triggers.Set, cfg Config, opts ...Option) (*Consumer, error) {
	o := consumerOptions{log: zerolog.Nop()}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("auth consumer: %w", err)
		}
	}
	data, streams, log, reg := o.data, o.streams, o.log, o.reg
	cfg.SetDefaults()
	data.SetDefaults()
	streams.SetDefaults()
	if err := errors.Join(cfg.Validate(), data.Validate(), streams.Validate()); err != nil {
		return nil, err
	}
	if js == nil || coll == nil || set == nil {
		return nil, errors.New("auth consumer: JetStream, collection and trigger set are required")
	}
	// A write may take longer than AckWait: in-progress acks, sent on
	// their own goroutine, keep its messages from being redelivered.
	writer, err := customdata.NewWriter(coll, data)
	if err != nil {
		return nil, err
	}
	metrics, err := newAuthMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("auth consumer metrics: %w", err)
	}
	var verifier *events.Verifier
	if len(cfg.TrustedSigners) > 0 {
		if verifier, err = events.NewVerifier(cfg.TrustedSigners); err != nil {
			return nil, fmt.Errorf("auth consumer: %w", err)
		}
	}
	a := &Consumer{
		cfg:      cfg,
		verifier: verifier,
		streams:  streams,
		js:       js,
		writer:   writer,
		data:     data,
		set:      set,
		decoder:  events.Decoder{MaxClockSkew: cfg.MaxClockSkew},
		dlq:      newDeadLetterer(js, cfg.DeadLetterStream, cfg.DeadLetterPrefix),
		log:      log.With().Str("component", "auth-consumer").Str("stream", cfg.Stream).Str("consumer", cfg.Consumer).Logger(),
		metrics:  metrics,
		ackWait:  cfg.AckWait,
		holds:    newUserHolds(cfg.MaxAckPending, cfg.AckWait),
	}
	return a, nil
}

// Run consumes until ctx is cancelled, then finishes the batch in flight
// and returns nil. Outages of NATS or MongoDB are waited out with backoff;
// Run returns an error only when the NATS connection is closed for good.
func (a *Consumer) Run(ctx context.Context) error {
	a.health.setRunning(true)
	defer a.health.setRunning(false)
	// Up until a write fails: an idle worker must not look like an outage.
	a.metrics.mongoUp.Set(1)
	bo := retry.NewBackOff(defaultAuthRetryInitial, a.cfg.RetryMaxInterval)
	for ctx.Err() == nil {
		if a.js.Conn().IsClosed() {
			return fmt.Errorf("auth consumer: %w", nats.ErrConnectionClosed)
		}
		cons, err := a.currentConsumer(ctx)
		var msgs []jetstream.Msg
		if err == nil {
			msgs, err = a.fetch(cons)
		}
		if err == nil {
			bo.Reset()
			a.fetchSucceeded()
		}
		if len(msgs) > 0 {
			a.processBatch(ctx, msgs)
		}
		if err != nil {
			a.fetchFailed(err)
			if consumerMayBeGone(err) {
				a.forgetConsumer()
			}
			if !retry.Sleep(ctx, bo.NextBackOff()) {
				return nil
			}
		}
	}
	return nil
}

// consumerMayBeGone reports whether a fetch error can mean that the
// consumer no longer exists, so that the next round looks it up again
// (and in create mode provisions it). A pull sent to a consumer that is
// gone, such as after a server restarted with an empty store, gets no
// responders rather than a not-found error; a lookup is cheap and finds
// an existing consumer again when the cause was a server still starting.
func consumerMayBeGone(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, nats.ErrNoResponders)
}

// fetch pulls one batch: up to BatchSize messages, waiting at most
// BatchWait. When the batch comes back full (a backlog), it goes on
// taking what is already waiting, without waiting, up to CoalesceWindow
// messages (fetchBacklog), so that the whole window is coalesced into one
// set of writes. It drains every batch completely (never abandoning
// delivered messages on shutdown) and returns what arrived along with any
// error.
func (a *Consumer) fetch(cons jetstream.Consumer) ([]jetstream.Msg, error) {
	if !a.js.Conn().IsConnected() {
		// A pull request sent now would sit in the reconnect buffer and
		// look like an idle stream.
		return nil, errNATSDisconnected
	}
	batch, err := cons.Fetch(a.cfg.BatchSize, jetstream.FetchMaxWait(a.cfg.BatchWait))
	if err != nil {
		return nil, err
	}
	msgs, size, err := drain(batch, make([]jetstream.Msg, 0, a.cfg.BatchSize), 0)
	if err != nil || len(msgs) < a.cfg.BatchSize {
		return msgs, err
	}
	return a.fetchBacklog(cons, msgs, size)
}

// fetchBacklog extends a full batch with the messages already waiting,
// one BatchSize at a time, until CoalesceWindow or maxCoalesceBytes is
// reached, a fetch comes back short (the backlog is gone), or the fetch
// phase has lasted backlogFetchBudget. An error ends it; the messages
// already delivered are returned with it, to be processed.
//
// Each fetch has a short expiry rather than no-wait: when the consumer is
// at its server-side max_ack_pending (another replica holds the rest, or an
// operator's consumer allows less than the window) the server parks a
// pull until it expires, and a no-wait pull then costs the client's full
// one-second fallback. The time bound keeps the whole phase well inside
// AckWait, since the heartbeat that extends these messages starts only
// once the window is processed.
func (a *Consumer) fetchBacklog(cons jetstream.Consumer, msgs []jetstream.Msg, size int) ([]jetstream.Msg, error) {
	started := time.Now()
	budget := a.backlogFetchBudget()
	for len(msgs) < a.cfg.CoalesceWindow && size < maxCoalesceBytes && time.Since(started) < budget {
		want := min(a.cfg.BatchSize, a.cfg.CoalesceWindow-len(msgs))
		batch, err := cons.Fetch(want, jetstream.FetchMaxWait(backlogFetchExpiry))
		if err != nil {
			return msgs, err
		}
		before := len(msgs)
		if msgs, size, err = drain(batch, msgs, size); err != nil || len(msgs)-before < want {
			return msgs, err
		}
	}
	return msgs, nil
}

// backlogFetchExpiry bounds one backlog fetch: messages already waiting
// arrive at once, so it is only paid when fewer than asked for are left
// (the end of the backlog) or none may be delivered (max_ack_pending).
const backlogFetchExpiry = 20 * time.Millisecond

// backlogFetchBudget is the longest fetch phase of one window: a quarter
// of AckWait, so that the first message fetched, delivered up to
// BatchWait before it, still gets its first in-progress ack in time.
func (a *Consumer) backlogFetchBudget() time.Duration { return a.ackWait / 4 }

// drain appends every message of batch to msgs and adds their payload
// sizes to size. A batch that ended by timing out or finding nothing is
// not an error.
func drain(batch jetstream.MessageBatch, msgs []jetstream.Msg, size int) ([]jetstream.Msg, int, error) {
	for m := range batch.Messages() {
		msgs = append(msgs, m)
		size += len(m.Data())
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
		return msgs, size, err
	}
	return msgs, size, nil
}

// currentConsumer returns the consumer handle, looking it up (and in
// create mode, provisioning it again) when there is none.
func (a *Consumer) currentConsumer(ctx context.Context) (jetstream.Consumer, error) {
	a.mu.Lock()
	cons := a.consumer
	a.mu.Unlock()
	if cons != nil {
		return cons, nil
	}
	lookupCtx, cancel := context.WithTimeout(ctx, defaultAuthOperationTimeout)
	defer cancel()
	cons, err := a.js.Consumer(lookupCtx, a.cfg.Stream, a.cfg.Consumer)
	if err != nil && a.streams.Mode == provision.Create &&
		(errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)) {
		a.log.Warn().Err(err).Msg("the auth stream or its consumer is gone (deleted, or NATS restarted with an empty store): " +
			"provisioning them again; events the server lost with them cannot be recovered")
		if perr := a.Provision(lookupCtx); perr != nil {
			return nil, perr
		}
		return a.currentConsumer(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("look up consumer %s on stream %s: %w", a.cfg.Consumer, a.cfg.Stream, err)
	}
	a.setConsumer(cons)
	return cons, nil
}

func (a *Consumer) setConsumer(cons jetstream.Consumer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.consumer = cons
	if info := cons.CachedInfo(); info != nil && info.Config.AckWait > 0 {
		a.ackWait = info.Config.AckWait
	}
}

func (a *Consumer) forgetConsumer() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.consumer = nil
}

func (a *Consumer) currentAckWait() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ackWait
}

// Healthy returns nil while fetching from NATS and writing to MongoDB work,
// or have been failing for less than UnhealthyAfter. Otherwise it says
// which side is down and since when (ErrConsumerUnhealthy), or that Run is
// not running (ErrConsumerNotRunning).
func (a *Consumer) Healthy() error {
	return a.health.check(time.Now(), a.cfg.UnhealthyAfter)
}

func (a *Consumer) fetchFailed(err error) {
	if a.health.fetch.Failed(time.Now(), err) {
		a.metrics.natsUp.Set(0)
		a.log.Warn().Err(err).Msg("fetching auth events fails; retrying with backoff")
	}
}

func (a *Consumer) fetchSucceeded() {
	if down, ok := a.health.fetch.Succeeded(time.Now()); ok {
		a.metrics.natsUp.Set(1)
		if down > 0 {
			a.log.Info().Dur("down_for_ms", down).Msg("fetching auth events works again")
		}
	}
}

func (a *Consumer) mongoFailed(err error) {
	if a.health.mongo.Failed(time.Now(), err) {
		a.metrics.mongoUp.Set(0)
		a.log.Warn().Err(err).Msg("MongoDB unavailable for custom-data writes; holding the batch (not acked, not counted as a delivery) and retrying with backoff")
	}
}

func (a *Consumer) mongoSucceeded() {
	if down, ok := a.health.mongo.Succeeded(time.Now()); ok {
		a.metrics.mongoUp.Set(1)
		if down > 0 {
			a.log.Info().Dur("down_for_ms", down).Msg("MongoDB custom-data writes work again")
		}
	}
}

// authHealth tracks both sides of the consumer: fetching from NATS and
// writing to MongoDB.
type authHealth struct {
	fetch, mongo outage.Tracker

	mu           sync.Mutex
	running      bool
	runningSince time.Time
}

func (h *authHealth) setRunning(r bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.running = r
	if r {
		h.runningSince = time.Now()
	}
}

func (h *authHealth) check(now time.Time, grace time.Duration) error {
	h.mu.Lock()
	running, runningSince := h.running, h.runningSince
	h.mu.Unlock()
	if !running {
		return ErrConsumerNotRunning
	}
	var problems []string
	if down, err, ok := h.fetch.Down(now); ok && down >= grace {
		problems = append(problems, fmt.Sprintf("NATS: fetching auth events has failed for %s: %v", down.Round(time.Second), err))
	} else if !h.fetch.Known() && now.Sub(runningSince) >= grace {
		problems = append(problems, fmt.Sprintf("NATS: no successful fetch of auth events in %s", now.Sub(runningSince).Round(time.Second)))
	}
	if down, err, ok := h.mongo.Down(now); ok && down >= grace {
		problems = append(problems, fmt.Sprintf("MongoDB: custom-data writes have failed for %s: %v", down.Round(time.Second), err))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrConsumerUnhealthy, strings.Join(problems, "; "))
	}
	return nil
}
