package notify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/mongo"

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
//     With Partitions above 1 each partition (a hash range of
//     documentKey._id) is such a lease and feed of its own, and a replica
//     may lead several.
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
	// slots are the partitions (one when unpartitioned), each with its
	// lease, checkpoint, leadership and health.
	slots []*slot
	// seats count the replicas sharing the partitions (rebalance); nil
	// when unpartitioned. Bound with the slots.
	seats *seats
	// reprovisions counts re-provisionings of what was gone (notice
	// stream or buckets): every term then reopens to check its stream.
	reprovisions atomic.Uint64
	// feeds opens the change feed: the collection's Watch (tests inject
	// server failures through another feedSource, see newNotifier).
	feeds feedSource

	dupGuard *duplicateUserGuard

	// Guards binding the slots' leases and checkpoints (Provision or the
	// first use in Run).
	bindMu          sync.Mutex
	isBound         bool
	preImagesOK     atomic.Bool // collMod succeeded
	preImagesWarned atomic.Bool

	running atomic.Bool
	// localSizeWarned: the "server cannot size documents" warning is out.
	localSizeWarned atomic.Bool

	// onCollectionGone is called when the feed reports the collection
	// dropped or renamed (see WithCollectionGone).
	onCollectionGone func()
	// uniqueIndex reports whether the unique user-id index is in place
	// (see WithUniqueIndexHealth); nil: unknown. goneAt is when the feed last
	// reported the collection gone (UnixNano, 0: never).
	uniqueIndex func() error
	goneAt      atomic.Int64

	// noticeJS is the JetStream context user notices are published
	// through asynchronously; acks counts them on acknowledgement.
	noticeJS jetstream.JetStream
	acks     *ackTracker
	// pubJS, when set (withNoticePublisher), publishes user notices
	// instead of noticeJS, with at most maxInFlight unacknowledged
	// (0: maxNoticesInFlight).
	pubJS       asyncPublisher
	maxInFlight int
	// requestLimit bounds one JetStream call made under Run's or
	// Provision's context (0: requestTimeout's default; tests shorten it).
	requestLimit time.Duration
}

// requestTimeout bounds one JetStream call (a lease acquisition, a bucket
// lookup, a provisioning call) made under a caller's context: nats.go
// applies its own default (5s a request) only to a context without a
// deadline, so under one with a far deadline a request whose reply was
// lost in a reconnect would wait for it. 15s is three requests at that
// default, the most one such call makes (a lease acquisition: create,
// read, reclaim; a bucket: account info, update, create).
func (n *Notifier) requestTimeout() time.Duration {
	if n.requestLimit > 0 {
		return n.requestLimit
	}
	return 15 * time.Second
}

// request is ctx bounded by requestTimeout.
func (n *Notifier) request(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, n.requestTimeout())
}

// duplicateCheckAfterGone is how long after the feed reports the
// collection dropped or renamed the duplicate-user check runs whatever the
// index looks like: the collection guard needs a moment to see the
// collection back without its index.
const duplicateCheckAfterGone = time.Minute

// Option configures a Notifier beyond its Config (see New).
type Option func(*notifierOptions) error

type notifierOptions struct {
	data             customdata.Config
	streams          provision.Streams
	log              zerolog.Logger
	reg              prometheus.Registerer
	onCollectionGone func()
	uniqueIndex      func() error
	// Test hooks: the change feed opened through feeds (a server's
	// failures the stand-in cannot produce), user notices published
	// through wrapPub(the real publisher) with at most maxInFlight
	// unacknowledged.
	feeds       feedSource
	wrapPub     func(asyncPublisher) asyncPublisher
	maxInFlight int
}

// WithData names the watched collection and its user-id rules (default:
// customdata.Config's defaults); its Database must be New's db (empty:
// db's name).
func WithData(data customdata.Config) Option {
	return func(o *notifierOptions) error { o.data = data; return nil }
}

// WithStreams sets the JetStream settings the notifier shares with the
// auth consumer (provision mode, replicas, duplicate window).
func WithStreams(streams provision.Streams) Option {
	return func(o *notifierOptions) error { o.streams = streams; return nil }
}

// WithLogger logs to log (default: nothing).
func WithLogger(log zerolog.Logger) Option {
	return func(o *notifierOptions) error { o.log = log; return nil }
}

// WithRegisterer registers the notifier's metrics on reg (default: none);
// each Notifier needs its own registry.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(o *notifierOptions) error { o.reg = reg; return nil }
}

// WithCollectionGone calls f each time the change feed reports the
// collection dropped or renamed (or its database dropped), so whoever
// restores the collection's indexes can look at once. f runs on the
// notifier's goroutine and must not block.
func WithCollectionGone(f func()) Option {
	return func(o *notifierOptions) error { o.onCollectionGone = f; return nil }
}

// WithUniqueIndexHealth tells the notifier how to learn whether the
// unique index on the user-id field is in place: f returns nil while it
// is (the collection guard's Healthy). The duplicate-user check
// (duplicate_user_changes_total) then runs only while duplicates are
// possible: with AllowDuplicates, while f reports a problem, and for
// duplicateCheckAfterGone after the feed reported the collection dropped
// or renamed. Without it every change is checked.
func WithUniqueIndexHealth(f func() error) Option {
	return func(o *notifierOptions) error { o.uniqueIndex = f; return nil }
}

// withFeeds opens the change feed through feeds instead of the
// collection's Watch, so tests can make it fail the way a real server
// does and the stand-in cannot.
func withFeeds(feeds feedSource) Option {
	return func(o *notifierOptions) error { o.feeds = feeds; return nil }
}

// withNoticePublisher publishes user notices through wrap(the real
// publisher), with at most maxInFlight unacknowledged (0:
// maxNoticesInFlight).
func withNoticePublisher(maxInFlight int, wrap func(real asyncPublisher) asyncPublisher) Option {
	return func(o *notifierOptions) error { o.wrapPub, o.maxInFlight = wrap, maxInFlight; return nil }
}

// New checks cfg and returns a Notifier publishing on js the notices of
// the collection WithData names, in db. It does no IO: call Provision,
// then Run.
func New(js jetstream.JetStream, db *mongo.Database, cfg Config, opts ...Option) (*Notifier, error) {
	o := notifierOptions{log: zerolog.Nop()}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("notifier: %w", err)
		}
	}
	data, streams, log, feeds := o.data, o.streams, o.log, o.feeds
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
	parts := partitions(cfg.Partitions)
	m, err := newNotifierMetrics(o.reg, parts)
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
		feeds:   feeds,

		onCollectionGone: o.onCollectionGone,
		uniqueIndex:      o.uniqueIndex,
		maxInFlight:      o.maxInFlight,
	}
	for _, p := range parts {
		n.slots = append(n.slots, newSlot(p, log))
	}
	m.initPartitions(parts)
	n.dupGuard = newDuplicateUserGuard(coll, data.UserIDField, m, log)
	n.acks = newAckTracker(m)
	if n.noticeJS, err = newNoticeJetStream(js.Conn(), n.acks, len(parts)); err != nil {
		return nil, fmt.Errorf("notifier: %w", err)
	}
	if o.wrapPub != nil {
		n.pubJS = o.wrapPub(n.noticeJS)
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
	for _, s := range n.slots {
		s.health.reset()
	}
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
				for _, s := range n.slots {
					s.health.leaseFailed(err)
				}
				if first {
					n.log.Warn().Err(err).Msg("notifier buckets unavailable (not provisioned?); retrying")
				}
			})
		if err != nil {
			return nil
		}
	}

	n.warnIfPartitionsChanged(ctx)
	if len(n.slots) == 1 {
		n.log.Info().Dur("lease_ttl", n.cfg.LeaseTTL).Msg("notifier started: competing for the change-stream lease")
		n.compete(ctx, n.slots[0])
		return nil
	}
	n.log.Info().Dur("lease_ttl", n.cfg.LeaseTTL).Int("partitions", len(n.slots)).
		Msg("notifier started: competing for the lease of every change-stream partition")
	var competitors sync.WaitGroup
	competitors.Add(1)
	go func() {
		defer competitors.Done()
		n.rebalance(ctx, n.seats)
	}()
	for _, s := range n.slots {
		competitors.Add(1)
		go func() {
			defer competitors.Done()
			n.compete(ctx, s)
		}()
	}
	competitors.Wait()
	return nil
}

func (n *Notifier) collectionGone() {
	n.goneAt.Store(time.Now().UnixNano())
	if n.onCollectionGone != nil {
		n.onCollectionGone()
	}
}

// IsLeader reports whether this replica currently runs a change feed (of
// any partition).
func (n *Notifier) IsLeader() bool { return n.leading() > 0 }

// LeadsPartitions lists the partitions this replica leads (0 to
// Partitions-1; [0] when it leads an unpartitioned notifier).
func (n *Notifier) LeadsPartitions() []int {
	var out []int
	for _, s := range n.slots {
		if s.leader.Load() {
			out = append(out, s.part.index)
		}
	}
	return out
}

// newNoticeJetStream is the JetStream context user notices are published
// through asynchronously: the Notifier's own, so the auth consumer's
// publishes never share its window. Each term bounds its window itself
// (maxNoticesInFlight); the library's bound is set above the sum of the
// windows of every partition this replica may lead (noticeMaxPending) only
// as a backstop, since past it a publish fails after a short stall instead
// of waiting. Every acknowledgement is awaited at most noticeAckTimeout.
func newNoticeJetStream(nc *nats.Conn, lat *ackTracker, partitions int) (jetstream.JetStream, error) {
	return jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(noticeMaxPending(partitions)),
		jetstream.WithPublishAsyncTimeout(noticeAckTimeout),
		jetstream.WithPublishAsyncAckHandler(lat.acked),
		jetstream.WithPublishAsyncErrHandler(lat.failed))
}

// noticeMaxPending is the library's backstop bound on unacknowledged
// notices: twice the windows of the terms of every partition, which one
// replica may all lead at once and which share one JetStream context. At
// one partition it is what it was before partitions (512).
func noticeMaxPending(partitions int) int {
	return 2 * maxNoticesInFlight * max(1, partitions)
}

// publishJS is what terms publish user notices through.
func (n *Notifier) publishJS() asyncPublisher {
	if n.pubJS != nil {
		return n.pubJS
	}
	return n.noticeJS
}

// changedUser queues the duplicate-user check of user when duplicates are
// possible (see WithUniqueIndexHealth): with the unique index in place a user
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
