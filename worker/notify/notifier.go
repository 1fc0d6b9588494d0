package notify

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/internal/lease"
	"github.com/customdata-worker/customdata-worker/internal/outage"
	"github.com/customdata-worker/customdata-worker/internal/provision"
	"github.com/customdata-worker/customdata-worker/internal/retry"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

// Notifier watches the custom-data collection with a change feed and
// publishes an invalidation notice on JetStream for every change, so token
// issuers drop stale data at once. No change is ever skipped silently:
//
//   - Every notice is published with a Nats-Msg-Id derived from the
//     change's resume token and acknowledged before the checkpoint moves
//     past it; after a restart the feed resumes at the checkpoint, and
//     re-published notices are de-duplicated by JetStream.
//   - When continuity is unknown (no checkpoint, a checkpoint the server
//     rejects as invalid, history lost, a position the server refuses to
//     read from again and again, the collection dropped or renamed, the feed
//     invalidated, or a change that names neither user nor document) it
//     publishes a flush-all, after opening the feed that covers
//     everything since.
//   - Several replicas may run; one holds a lease in NATS KV and runs the
//     change feed, the others stand by and take over when it expires.
//     A leader whose change feed stalls (fails or hangs for StallAfter
//     while the lease still renews) gives the lease up and stays away for
//     a lease TTL, so a replica with a working MongoDB path takes over.
type Notifier struct {
	cfg     Config
	data    customdata.Config
	streams provision.Streams
	js      jetstream.JetStream
	db      *mongo.Database
	coll    *mongo.Collection
	log     zerolog.Logger
	metrics *notifierMetrics
	limiter *logLimiter
	health  *notifierHealth
	// feeds opens the change feed: the collection's Watch (tests inject
	// server failures through another feedSource, see newNotifier).
	feeds feedSource

	dupGuard *duplicateUserGuard

	// Bound by Provision or on first use in Run.
	bindMu          sync.Mutex
	checkpoints     *checkpointStore
	lease           *lease.Lease
	preImagesOK     atomic.Bool // collMod succeeded
	preImagesWarned atomic.Bool

	running atomic.Bool
	leader  atomic.Bool
	// localSizeWarned: the "server cannot size documents" warning is out.
	localSizeWarned atomic.Bool

	// onCollectionGone is called when the feed reports the collection
	// dropped or renamed (see OnCollectionGone).
	onCollectionGone func()
	// uniqueIndex reports whether the unique user-id index is in place
	// (see UniqueIndexHealth); nil: unknown. goneAt is when the feed last
	// reported the collection gone (UnixNano, 0: never).
	uniqueIndex func() error
	goneAt      atomic.Int64

	// noticeJS is the JetStream context user notices are published
	// through asynchronously; acks counts them on acknowledgement.
	noticeJS jetstream.JetStream
	acks     *ackTracker
	// Tests only: publish user notices through pubJS instead, with at most
	// maxInFlight unacknowledged (0: maxNoticesInFlight).
	pubJS       asyncPublisher
	maxInFlight int
}

// duplicateCheckAfterGone is how long after the feed reports the
// collection dropped or renamed the duplicate-user check runs whatever the
// index looks like: the collection guard needs a moment to see the
// collection back without its index.
const duplicateCheckAfterGone = time.Minute

// New checks cfg and returns a Notifier for the collection data names, in
// db (data.Database must be db's name); streams are the JetStream settings
// it shares with the auth consumer. Metrics are registered on reg (none if
// reg is nil); each Notifier needs its own registry.
func New(cfg Config, data customdata.Config, streams provision.Streams, js jetstream.JetStream, db *mongo.Database,
	log zerolog.Logger, reg prometheus.Registerer) (*Notifier, error) {
	return newNotifier(cfg, data, streams, js, db, log, reg, nil)
}

// newNotifier is New with the change feed opened by feeds (nil: the
// collection's Watch), so tests can make it fail the way a real server
// does and the stand-in cannot.
func newNotifier(cfg Config, data customdata.Config, streams provision.Streams, js jetstream.JetStream, db *mongo.Database,
	log zerolog.Logger, reg prometheus.Registerer, feeds feedSource) (*Notifier, error) {
	if js == nil || db == nil {
		return nil, errors.New("notifier: JetStream and database are required")
	}
	if data.Database == "" {
		data.Database = db.Name()
	}
	cfg.SetDefaults()
	data.SetDefaults()
	streams.SetDefaults()
	if cfg.InstanceID == "" {
		cfg.InstanceID = instanceName()
	}
	if err := errors.Join(cfg.Validate(), cfg.ValidateWith(streams), cfg.ValidateWithData(data), data.Validate(), streams.Validate()); err != nil {
		return nil, err
	}
	if data.Database != db.Name() {
		return nil, fmt.Errorf("notifier: configured database %q but given database %q", data.Database, db.Name())
	}
	m, err := newNotifierMetrics(reg)
	if err != nil {
		return nil, err
	}
	coll := db.Collection(data.Collection)
	if feeds == nil {
		feeds = watchFeed{coll}
	}
	log = log.With().Str("component", "notifier").Str("collection", data.Database+"."+data.Collection).
		Str("instance", cfg.InstanceID).Logger()
	n := &Notifier{
		cfg: cfg, data: data, streams: streams, js: js, db: db, coll: coll, log: log, metrics: m,
		limiter: newLogLimiter(time.Minute),
		health:  &notifierHealth{},
		feeds:   feeds,
	}
	n.dupGuard = newDuplicateUserGuard(coll, data.UserIDField, m, log)
	n.acks = newAckTracker(m)
	if n.noticeJS, err = newNoticeJetStream(js.Conn(), n.acks); err != nil {
		return nil, fmt.Errorf("notifier: %w", err)
	}
	return n, nil
}

// Run competes for the lease and, while holding it, runs the change feed
// and publishes notices. It blocks until ctx is cancelled and then returns
// nil; failures of MongoDB or NATS are retried with backoff, never fatal.
func (n *Notifier) Run(ctx context.Context) error {
	if !n.running.CompareAndSwap(false, true) {
		return errors.New("notifier: Run called twice")
	}
	n.health.reset()
	defer n.running.Store(false)
	// Fails what is still in flight (nothing: every term waits for its
	// window) and stops the context's reply subscription and listener.
	defer n.noticeJS.CleanupPublisher()

	var wg sync.WaitGroup
	defer wg.Wait()
	guardCtx, stopGuard := context.WithCancel(ctx)
	defer stopGuard()
	wg.Add(1)
	go func() {
		defer wg.Done()
		n.dupGuard.run(guardCtx)
	}()

	if !n.bound() {
		bo := retry.NewBackOff(200*time.Millisecond, n.cfg.RetryMaxInterval)
		_, err := retry.Forever(ctx, bo, func() (struct{}, error) { return struct{}{}, n.bindExisting(ctx) },
			func(err error, first bool) {
				n.health.leaseFailed(err)
				if first {
					n.log.Warn().Err(err).Msg("notifier buckets unavailable (not provisioned?); retrying")
				}
			})
		if err != nil {
			return nil
		}
	}

	n.log.Info().Dur("lease_ttl", n.cfg.LeaseTTL).Msg("notifier started: competing for the change-stream lease")
	interval := n.cfg.LeaseTTL / 3
	lastHolder := ""
	leaseErrLogged := false
	for ctx.Err() == nil {
		ok, err := n.lease.TryAcquire(ctx)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil
			}
			// Connected yet refused: the bucket itself may be gone.
			if n.js.Conn().IsConnected() {
				if perr := n.restoreProvisioningBounded(ctx); errors.Is(perr, ErrNotProvisioned) {
					err = perr // what /readyz must say: nothing to reach
				}
			}
			n.health.leaseFailed(err)
			if !leaseErrLogged {
				n.log.Warn().Err(err).Msg("cannot reach the lease; retrying")
				leaseErrLogged = true
			}
		case ok:
			n.health.leaseOK()
			leaseErrLogged, lastHolder = false, ""
			if holdOff := n.lead(ctx); holdOff > 0 {
				// Stepped down: stay out of the competition long enough
				// for a standby to win it.
				retry.Sleep(ctx, holdOff)
			}
			continue
		default:
			n.health.leaseOK()
			leaseErrLogged = false
			if h := n.lease.Holder(); h != lastHolder {
				n.log.Info().Str("holder", h).Msg("standing by: another replica holds the change-stream lease")
				lastHolder = h
			}
			n.probeAfterStepDown(ctx)
		}
		// Jitter keeps standbys from hammering the bucket in step.
		retry.Sleep(ctx, interval-interval/10+time.Duration(rand.Int64N(int64(interval/5)+1)))
	}
	return nil
}

// lead runs one leadership term. The term ends the moment a renewal fails
// (leaseCtx is cancelled, which also aborts an in-flight publish), when
// the change feed stalls (the lease is given up; lead returns how long
// to keep away from it), or when ctx ends (the feed stops after the
// event in hand is published and checkpointed).
func (n *Notifier) lead(ctx context.Context) (holdOff time.Duration) {
	rev := n.lease.Revision()
	leaseCtx, cancelLease := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelLease(nil)
	termCtx, cancelTerm := context.WithCancel(leaseCtx)
	defer cancelTerm()
	defer context.AfterFunc(ctx, cancelTerm)()
	n.leader.Store(true)
	n.metrics.leader.Set(1)
	n.log.Info().Uint64("term", rev).Msg("acquired the change-stream lease: leading")

	beatsDone := make(chan struct{})
	go func() {
		defer close(beatsDone)
		n.heartbeats(termCtx)
	}()
	defer func() { cancelTerm(); <-beatsDone }()
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		n.renewLoop(leaseCtx, cancelLease)
	}()
	pctx, pcancel := context.WithTimeout(termCtx, n.cfg.feedOpTimeout())
	n.ensurePreImages(pctx)
	pcancel()
	// The notice stream alone may be gone (deleted) while the buckets
	// live on; notices published now must have somewhere to go.
	if err := n.restoreProvisioningBounded(termCtx); err != nil {
		n.log.Warn().Err(err).Msg("could not check the notice stream at the start of the term")
	}
	stalled := newTerm(n.termDeps(), n.log, n.lease.Session(), rev, leaseCtx).run(termCtx)
	cancelLease(errTermEnded)
	<-renewDone

	n.health.feedOK()
	defer func() {
		// After the health update: whoever sees "not leader" also sees
		// why.
		n.leader.Store(false)
		n.metrics.leader.Set(0)
		n.metrics.checkpointWritten(time.Time{})
	}()
	if cause := context.Cause(leaseCtx); errors.Is(cause, lease.ErrLost) {
		n.log.Warn().Err(cause).Msg("lost the change-stream lease: stopped the change stream")
		return 0
	}
	if stalled != nil && ctx.Err() == nil {
		return n.stepDown(ctx, stalled)
	}
	if ctx.Err() != nil {
		if err := n.releaseLease(ctx); err != nil {
			n.log.Debug().Err(err).Msg("lease release failed; it expires by itself")
		}
	}
	n.log.Info().Msg("stopped leading")
	return 0
}

// termDeps is what each term is given (once bound: Provision or Run).
func (n *Notifier) termDeps() termDeps {
	return termDeps{
		cfg: n.cfg, data: n.data, coll: n.coll, feeds: n.feeds, store: n.checkpoints, js: n.js,
		metrics: n.metrics, health: n.health, limiter: n.limiter, localSizeWarned: &n.localSizeWarned,
		pubJS: n.publishJS(), acks: n.acks, maxInFlight: n.maxInFlight,
		hooks: termHooks{collectionGone: n.collectionGone, changedUser: n.changedUser},
	}
}

// stepDownStalled labels stepdowns_total for a stalled change feed.
const stepDownStalled = "change_stream_stalled"

// stepDown gives the lease up after the change feed stalled, and returns
// how long to keep away from it: one TTL plus jitter when released (a
// standby polls every TTL/3, so it wins), two when the release failed (our
// value may live one more TTL).
func (n *Notifier) stepDown(ctx context.Context, cause error) time.Duration {
	n.health.steppedDown(cause)
	n.metrics.stepdowns.WithLabelValues(stepDownStalled).Inc()
	holdOff := n.cfg.LeaseTTL
	releaseErr := n.releaseLease(ctx)
	if releaseErr != nil {
		holdOff *= 2
	}
	holdOff += time.Duration(rand.Int64N(int64(n.cfg.LeaseTTL/5) + 1))
	ev := n.log.Warn().Err(cause).Dur("stall_after", n.cfg.StallAfter).Dur("hold_off", holdOff)
	if releaseErr != nil {
		ev = ev.AnErr("release_error", releaseErr)
	}
	ev.Msg("stepped down: the change stream made no progress while the lease still renewed; leaving the lease to a replica whose MongoDB works")
	return holdOff
}

// releaseLease deletes our lease revision, bounded in time.
func (n *Notifier) releaseLease(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	return n.lease.Release(rctx)
}

// probeAfterStepDown, on a standby that stepped down, checks whether the
// change feed works again (opens one and closes it) and if so clears the
// step-down from Healthy. It does not compete for the lease: a replica
// that recovered simply stands by.
func (n *Notifier) probeAfterStepDown(ctx context.Context) {
	if !n.health.isSteppedDown() {
		return
	}
	timeout := n.cfg.feedOpTimeout()
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cs, err := n.coll.Watch(pctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(n.cfg.MaxAwaitTime))
	if err != nil {
		return
	}
	closeFeed(ctx, cs, timeout)
	n.health.feedOK()
	n.log.Info().Msg("the change stream works again after the step-down: healthy, standing by")
}

// renewLoop renews the lease every TTL/3. A renewal that fails or takes
// longer than TTL/3 ends the term: by then another replica may be about to
// take over.
func (n *Notifier) renewLoop(ctx context.Context, cancel context.CancelCauseFunc) {
	interval := n.cfg.LeaseTTL / 3
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, rcancel := context.WithTimeout(ctx, interval)
		err := n.lease.Renew(rctx)
		rcancel()
		if err != nil {
			if ctx.Err() == nil {
				n.health.leaseFailed(err)
			}
			cancel(err)
			return
		}
		n.health.leaseOK()
	}
}

// OnCollectionGone registers f, called each time the change feed
// reports the collection dropped or renamed (or its database dropped), so
// whoever restores the collection's indexes can look at once. f runs on
// the notifier's goroutine and must not block. Call it before Run.
func (n *Notifier) OnCollectionGone(f func()) { n.onCollectionGone = f }

func (n *Notifier) collectionGone() {
	n.goneAt.Store(time.Now().UnixNano())
	if n.onCollectionGone != nil {
		n.onCollectionGone()
	}
}

// IsLeader reports whether this replica currently runs the change feed.
func (n *Notifier) IsLeader() bool { return n.leader.Load() }

// Healthy returns nil while the notifier runs and neither the lease nor
// (on the leader) the change feed or publishing has been failing for
// longer than UnhealthyAfter.
func (n *Notifier) Healthy() error {
	if !n.running.Load() {
		return ErrNotifierNotRunning
	}
	return n.health.check(n.cfg.UnhealthyAfter, n.leader.Load())
}

// notifierHealth tracks since when the lease and the feed fail.
type notifierHealth struct {
	lease, stream outage.Tracker

	mu sync.Mutex
	// stepDownErr: this replica stepped down because its change feed
	// stalled, and has not seen a change feed work since.
	stepDownErr error
}

func (h *notifierHealth) reset() {
	h.lease.Reset()
	h.stream.Reset()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stepDownErr = nil
}

func (h *notifierHealth) leaseFailed(err error) { h.lease.Failed(time.Now(), err) }

func (h *notifierHealth) leaseOK() { h.lease.Succeeded(time.Now()) }

func (h *notifierHealth) feedFailed(err error) { h.stream.Failed(time.Now(), err) }

// feedOK: the change feed works (this also ends a step-down).
func (h *notifierHealth) feedOK() {
	h.stream.Succeeded(time.Now())
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stepDownErr = nil
}

func (h *notifierHealth) steppedDown(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stepDownErr = err
}

func (h *notifierHealth) isSteppedDown() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stepDownErr != nil
}

func (h *notifierHealth) check(after time.Duration, leader bool) error {
	now := time.Now()
	if down, err, ok := h.lease.Down(now); ok && down > after {
		return fmt.Errorf("%w: lease unavailable for %s: %w", ErrNotifierUnhealthy, down.Round(time.Second), err)
	}
	if err := func() error { h.mu.Lock(); defer h.mu.Unlock(); return h.stepDownErr }(); err != nil {
		// Reported at once: the feed already failed for StallAfter.
		return fmt.Errorf("%w: stepped down from leading: %w", ErrNotifierUnhealthy, err)
	}
	if down, err, ok := h.stream.Down(now); leader && ok && down > after {
		return fmt.Errorf("%w: change stream or publishing failing for %s: %w", ErrNotifierUnhealthy, down.Round(time.Second), err)
	}
	return nil
}

// newNoticeJetStream is the JetStream context user notices are published
// through asynchronously: the Notifier's own, so the auth consumer's
// publishes never share its window. The term bounds the window itself
// (maxNoticesInFlight); the library's bound is set above it only as a
// backstop, since past it a publish fails after a short stall instead of
// waiting. Every acknowledgement is awaited at most noticeAckTimeout.
func newNoticeJetStream(nc *nats.Conn, lat *ackTracker) (jetstream.JetStream, error) {
	return jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(2*maxNoticesInFlight),
		jetstream.WithPublishAsyncTimeout(noticeAckTimeout),
		jetstream.WithPublishAsyncAckHandler(lat.acked),
		jetstream.WithPublishAsyncErrHandler(lat.failed))
}

// publishJS is what terms publish user notices through.
func (n *Notifier) publishJS() asyncPublisher {
	if n.pubJS != nil {
		return n.pubJS
	}
	return n.noticeJS
}

// UniqueIndexHealth tells the notifier how to learn whether the unique
// index on the user-id field is in place: f returns nil while it is (the
// collection guard's Healthy). Call it before Run. The duplicate-user
// check (duplicate_user_changes_total) then runs only while duplicates
// are possible: with AllowDuplicates, while f reports a problem, and for
// duplicateCheckAfterGone after the feed reported the collection dropped
// or renamed. Without it every change is checked.
func (n *Notifier) UniqueIndexHealth(f func() error) { n.uniqueIndex = f }

// changedUser queues the duplicate-user check of user when duplicates are
// possible (see UniqueIndexHealth): with the unique index in place a user
// cannot have two documents, so the per-change query is skipped.
func (n *Notifier) changedUser(user string) {
	if n.duplicatesPossible() {
		n.dupGuard.enqueue(user)
	}
}

func (n *Notifier) duplicatesPossible() bool {
	if n.data.AllowDuplicates || n.uniqueIndex == nil || n.uniqueIndex() != nil {
		return true
	}
	gone := n.goneAt.Load()
	return gone != 0 && time.Since(time.Unix(0, gone)) < duplicateCheckAfterGone
}
