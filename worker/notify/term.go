package notify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/internal/outage"
	"github.com/customdata-worker/customdata-worker/internal/retry"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

// term runs the change feed for one leadership term: open, resume, poll,
// reopen; it keeps the position (pending, saved, checkpoint) and hands
// notices to its publisher. It is used by one goroutine and does not know
// the Notifier: what it needs is given to it (termDeps).
type term struct {
	termDeps
	log zerolog.Logger
	pub *publisher

	serverSize     bool // the pipeline computes $bsonSize
	sizeConclusive bool
	lastSizeProbe  time.Time

	// pending is the position after the last acknowledged notice, not yet
	// written to the checkpoint store.
	pending *checkpoint
	// saved is the position this term last wrote to the store.
	saved          *checkpoint
	savedToken     []byte
	lastCheckpoint time.Time
	// afterFeedEnd: the previous event was a drop/rename/dropDatabase
	// whose flush covers the invalidate that follows it.
	afterFeedEnd bool

	// failing: a failure was logged and the feed has made no progress
	// since (it is logged once per outage).
	failing bool

	// lastProgress is when the feed last yielded an event or answered a
	// poll (or the term started); failedSinceProgress says an attempt
	// failed since. Together they tell a stalled stream from a blip.
	lastProgress        time.Time
	failedSinceProgress bool

	// supersede: whether the checkpoint the term started from was
	// superseded by another partition count's.
	supersede supersedeCheck
	// noticeStream: the notice stream this term's notices went to.
	noticeStream noticeStreamCheck

	// feedPosition: where the feed is and how the server treated it
	// there (timeouts and refusals in a row, distrust).
	feedPosition
}

// termDeps is what a term needs, shared by every term of one Notifier.
type termDeps struct {
	// part is the partition this term watches (partition{} when the
	// collection is not partitioned).
	part  partition
	cfg   Config
	data  customdata.Config
	coll  *mongo.Collection // the watched collection: probed for $bsonSize
	feeds feedSource
	store *checkpointStore
	js    jetstream.JetStream
	// pubJS publishes user notices asynchronously (the Notifier's own
	// JetStream context); acks counts them and observes their latency
	// on arrival; maxInFlight bounds the unacknowledged ones.
	pubJS       asyncPublisher
	acks        *ackTracker
	maxInFlight int
	metrics     *notifierMetrics
	health      *notifierHealth
	limiter     *logLimiter
	// localSizeWarned: the "server cannot size documents" warning is out
	// (once per Notifier, not per term).
	localSizeWarned *atomic.Bool
	hooks           termHooks
	// watch sees the sequences the slot's notices and heartbeats are
	// stored at; reprovisions counts the Notifier's re-provisionings
	// (noticestream.go).
	watch        *streamWatch
	reprovisions *atomic.Uint64
}

// termHooks are the effects of a change beyond its notices.
type termHooks struct {
	// collectionGone: the feed reported the collection dropped or renamed
	// (or its database dropped). It must not block.
	collectionGone func()
	// changedUser: a user's document changed (the duplicate-user guard
	// checks it). It must not block.
	changedUser func(user string)
	// publishFailed: a notice could not be stored. The notice stream
	// alone may be gone while the term runs (the buckets live on, so no
	// new term would restore it): it looks and, in create mode, provisions
	// again, returning ErrNotProvisioned in verify mode.
	publishFailed func(ctx context.Context) error
}

// newTerm starts a term at lease revision rev; leaseCtx ends when the
// lease is lost or the term is over.
func newTerm(d termDeps, log zerolog.Logger, leaseSession string, rev uint64, leaseCtx context.Context) *term {
	log = log.With().Uint64("term", rev).Logger()
	// The flush-alls of different partitions' terms must not share a
	// Msg-Id: each stands for its own gap.
	session := leaseSession
	if d.part.partitioned() {
		session += "|" + d.part.String()
	}
	pubRetry := retry.NewBackOff(50*time.Millisecond, d.cfg.RetryMaxInterval)
	maxInFlight := d.maxInFlight
	if maxInFlight <= 0 {
		maxInFlight = maxNoticesInFlight
	}
	return &term{
		termDeps: d,
		log:      log,
		pub: &publisher{
			async: d.pubJS, acks: d.acks, maxInFlight: maxInFlight, retry: pubRetry,
			js: d.js, stream: d.cfg.Stream, prefix: d.cfg.SubjectPrefix, leaseCtx: leaseCtx,
			retryMax: d.cfg.RetryMaxInterval, metrics: d.metrics, health: d.health, log: log,
			leaseSession: session, revision: rev, watch: d.watch,
		},
		lastProgress: time.Now(),
		// What happened before the term started is what its first open
		// checks (checkNoticeStream).
		noticeStream: noticeStreamCheck{reprovisions: loadCount(d.reprovisions)},
	}
}

// loadCount reads c; 0 when there is none (a term built without one).
func loadCount(c *atomic.Uint64) uint64 {
	if c == nil {
		return 0
	}
	return c.Load()
}

// progress records that the feed works.
// An open alone is not progress: with an empty first batch it succeeds
// even where every read fails.
func (tm *term) progress() {
	tm.lastProgress = time.Now()
	if tm.failedSinceProgress && !tm.pub.pubFailed {
		tm.health.feedOK()
	}
	tm.failedSinceProgress = false
	if tm.failing {
		tm.failing = false
		tm.log.Info().Msg("change stream reopened")
	}
}

// run keeps a change feed open and its notices flowing until ctx ends
// (nil) or the feed stalls (an error wrapping errFeedStalled): no
// progress for StallAfter and every attempt since failed.
func (tm *term) run(ctx context.Context) (stalled error) {
	tm.probeSize(ctx)
	bo := retry.NewBackOff(100*time.Millisecond, tm.cfg.RetryMaxInterval)
	for ctx.Err() == nil {
		err := tm.runFeed(ctx)
		if ctx.Err() != nil {
			break
		}
		if errors.Is(err, errReopenNow) {
			bo.Reset()
			continue
		}
		if errors.Is(err, errPublishFailed) {
			// Not the feed's failure (no feed_errors, no stall): reopen
			// it from the last acknowledged position, which republishes
			// the failed notice and every later one. The publisher
			// logged it and keeps its own backoff, which starts over
			// once a notice is acknowledged again.
			if tm.hooks.publishFailed != nil {
				switch perr := tm.hooks.publishFailed(ctx); {
				case errors.Is(perr, ErrNotProvisioned):
					tm.health.feedFailed(perr) // what /readyz must say
				case perr != nil && ctx.Err() == nil:
					if ok, held := tm.limiter.allow("provision"); ok {
						tm.log.Warn().Err(perr).Int("suppressed", held).
							Msg("the notice stream could not be checked or provisioned again after a failed publish")
					}
				}
			}
			if !retry.Sleep(ctx, tm.pub.retry.NextBackOff()) {
				break
			}
			continue
		}
		class := classifyFeedError(err)
		switch class {
		case feedHistoryLost, feedTokenInvalid:
			// Reported while reading (some servers do): the checkpoint
			// cannot be resumed from either.
			tm.distrust = flushReasonForRefusedToken(class)
		case feedRefused:
			if code := outage.FirstCode(err); tm.refused(code) {
				tm.log.Warn().Err(err).Int("code", code).Int("attempts", tm.refusals).
					Msg("the server refuses the change stream at the same position every time: starting from now after a flush-all")
			}
		}
		tm.metrics.feedErrors.WithLabelValues(class.String()).Inc()
		tm.health.feedFailed(err)
		if !tm.failing {
			tm.log.Warn().Err(err).Str("class", class.String()).Int("code", outage.FirstCode(err)).
				Msg("change stream failed; reopening from the last checkpoint with backoff")
			tm.failing = true
		}
		if !tm.failedSinceProgress {
			// The feed made progress (an event or an answered poll) since
			// the last failure: a new outage starts the backoff over. An
			// open alone is no progress: with an empty first batch it
			// succeeds even where every read fails.
			bo.Reset()
		}
		tm.failedSinceProgress = true
		stuck := time.Since(tm.lastProgress)
		// An open that ran out of the server's time limit shows a server
		// that answers; another replica would meet the same scan. The
		// widening is bounded (maxOpenTimeouts), so the term goes on.
		widening := class == feedTimedOut && tm.feedPosition.widening()
		if stuck >= tm.cfg.StallAfter && !widening {
			stalled = fmt.Errorf("%w: no progress for %s, last error: %w", errFeedStalled, stuck.Round(time.Millisecond), err)
			break
		}
		// Wake up at the stall deadline at the latest, so the step-down
		// is not late by a backoff interval.
		wait := bo.NextBackOff()
		if !widening {
			wait = min(wait, tm.cfg.StallAfter-stuck)
		}
		if !retry.Sleep(ctx, wait) {
			break
		}
	}
	// Whatever was acknowledged is worth keeping, even on the way out.
	tm.savePending(context.WithoutCancel(ctx), true)
	return stalled
}

// probeSize decides whether the server computes document sizes.
func (tm *term) probeSize(ctx context.Context) {
	tm.lastSizeProbe = time.Now()
	// Bounded like a poll: a hung server must not hold the term here.
	pctx, cancel := context.WithTimeout(ctx, tm.cfg.feedOpTimeout())
	defer cancel()
	tm.serverSize, tm.sizeConclusive = probeServerSize(pctx, tm.coll)
	if !tm.serverSize && tm.sizeConclusive && tm.localSizeWarned.CompareAndSwap(false, true) {
		tm.log.Warn().Msg("the server cannot evaluate $bsonSize: change events carry whole documents so the worker can size them")
	}
}

// runFeed opens the change feed (openFeed), publishes the flush-all an
// open from now calls for, and consumes the feed until an error.
func (tm *term) runFeed(ctx context.Context) error {
	cs, flush, err := tm.openFeed(ctx)
	if err != nil {
		return err
	}
	defer func() { tm.close(ctx, cs) }()
	tm.afterFeedEnd = false
	tm.opened(flush != "")
	if flush != "" {
		tm.at = slices.Clone(cs.ResumeToken())
		// The feed is open before the flush is published, so every
		// change the flush does not cover is seen by the feed.
		if err := tm.pub.publishFromNow(ctx, flush); err != nil {
			return err
		}
		tm.log.Warn().Str("reason", string(flush)).Msg("published flush-all: continuity with the previous position is unknown")
		// Servers that report a resume token before the first event give
		// a checkpoint right away; otherwise the first event does.
		if tok := cs.ResumeToken(); tok != nil {
			tm.pending = &checkpoint{Token: slices.Clone(tok)}
			tm.savePending(ctx, true)
		}
	}
	return tm.consume(ctx, cs)
}
