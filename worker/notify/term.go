package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/outage"
	"github.com/customdata-worker/customdata-worker/internal/retry"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

// idleCheckpointInterval is how often an idle feed's position (the
// server's post-batch resume token) is checkpointed: often enough to stay
// far inside any oplog window, rarely enough to cost nothing.
const idleCheckpointInterval = 10 * time.Second

// maxOpenTimeouts bounds how often in a row opening the feed at one
// position may end in the server's time limit (MaxTimeMSExpired). Each
// retry doubles the open's time limit; past the bound the feed starts
// from now after a flush-all (position_unreadable).
const maxOpenTimeouts = 3

// maxPositionRefusals is how often in a row the server may refuse, with
// the same error, to open or read the feed at one position before the
// position counts as unreadable (e.g. BSONObjectTooLarge for a change
// whose event exceeds 16 MB): the feed then starts from now after a
// flush-all (position_unreadable) instead of reopening there forever.
const maxPositionRefusals = 3

// sizeProbeInterval is how often an inconclusive $bsonSize probe (empty
// collection) is repeated.
const sizeProbeInterval = 30 * time.Second

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

	// distrust: the server said, while reading, that the checkpoint's
	// history is gone; the next open starts from now with this flush.
	distrust events.FlushReason

	// failing: a failure was logged and the feed has made no progress
	// since (it is logged once per outage).
	failing bool

	// lastProgress is when the feed last yielded an event or answered a
	// poll (or the term started); failedSinceProgress says an attempt
	// failed since. Together they tell a stalled stream from a blip.
	lastProgress        time.Time
	failedSinceProgress bool

	// at is the feed's position: where it was opened, then the token of
	// the last event or post-batch resume token read. An error repeated
	// here tells a position the server cannot read from a failing server.
	at []byte
	// openTimeouts counts opens at timeoutAt that ran out of the server's
	// time limit in a row.
	openTimeouts int
	timeoutAt    []byte
	// refusals counts identical refusals (refusedCode) at refusedAt in a
	// row.
	refusals    int
	refusedAt   []byte
	refusedCode int
}

// termDeps is what a term needs, shared by every term of one Notifier.
type termDeps struct {
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
}

// termHooks are the effects of a change beyond its notices.
type termHooks struct {
	// collectionGone: the feed reported the collection dropped or renamed
	// (or its database dropped). It must not block.
	collectionGone func()
	// changedUser: a user's document changed (the duplicate-user guard
	// checks it). It must not block.
	changedUser func(user string)
}

// newTerm starts a term at lease revision rev; leaseCtx ends when the
// lease is lost or the term is over.
func newTerm(d termDeps, log zerolog.Logger, leaseSession string, rev uint64, leaseCtx context.Context) *term {
	log = log.With().Uint64("term", rev).Logger()
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
			leaseSession: leaseSession, revision: rev,
		},
		lastProgress: time.Now(),
	}
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
			tm.refused(err)
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
		widening := class == feedTimedOut && tm.openTimeouts > 0 && tm.openTimeouts < maxOpenTimeouts
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

// runFeed opens the change feed at the checkpoint (or from now, with a
// flush-all) and consumes it until an error.
func (tm *term) runFeed(ctx context.Context) error {
	cp, found, err := tm.startPosition(ctx)
	var flush events.FlushReason
	if err != nil {
		if !errors.Is(err, errCheckpointUnusable) {
			return err
		}
		tm.log.Warn().Err(err).Msg("checkpoint unusable: starting from now after a flush-all")
		flush, found = events.FlushBadCheckpoint, false
	}
	if found && tm.distrust != "" {
		if tm.distrust != events.FlushPositionUnreadable { // refused logged that one
			tm.log.Warn().Str("reason", string(tm.distrust)).Msg("the server cannot resume from the checkpoint: starting from now after a flush-all")
		}
		flush, found = tm.distrust, false
	}

	var cs feedCursor
	if found {
		tm.at = cp.Token
		cs, err = tm.open(ctx, &cp)
		if err != nil {
			class := classifyFeedError(err)
			switch class {
			case feedPipelineUnsupported:
				return tm.pipelineUnsupported(err)
			case feedHistoryLost, feedTokenInvalid:
				flush = flushReasonForRefusedToken(class)
			case feedTimedOut:
				if n := tm.openTimedOut(cp.Token); n < maxOpenTimeouts {
					return fmt.Errorf("resume change stream (timed out %d times at this position; next open may take %s): %w",
						n, tm.openTimeout(), err)
				}
				flush = events.FlushPositionUnreadable
			default:
				// Transient, or refused: run counts identical refusals
				// at one position (maxPositionRefusals).
				return fmt.Errorf("resume change stream: %w", err)
			}
			// The position is lost, invalid or cannot be reached in time.
			// Opening without the token tells a refused token from a
			// refused stream.
			refused := err
			cs, err = tm.open(ctx, nil)
			if err != nil {
				return fmt.Errorf("open change stream after the checkpoint was refused (%v): %w", refused, err)
			}
			tm.log.Warn().Str("class", class.String()).Int("code", outage.FirstCode(refused)).Str("reason", string(flush)).
				Int("attempts", max(1, tm.openTimeouts)).
				Msg("the server cannot resume from the checkpoint: starting from now after a flush-all")
		}
	} else {
		if flush == "" {
			flush = events.FlushNoCheckpoint
		}
		if cs, err = tm.open(ctx, nil); err != nil {
			if classifyFeedError(err) == feedPipelineUnsupported {
				return tm.pipelineUnsupported(err)
			}
			if tm.distrust == events.FlushPositionUnreadable {
				// The feed fails from now too: the position was not the
				// cause. Back to the checkpoint, counting afresh.
				tm.distrust, tm.refusals = "", 0
				tm.log.Info().Msg("the change stream cannot be opened from now either: resuming from the checkpoint again")
			}
			return fmt.Errorf("open change stream: %w", err)
		}
	}
	defer func() { tm.close(ctx, cs) }()
	tm.afterFeedEnd = false
	tm.distrust = ""
	tm.openTimeouts, tm.timeoutAt = 0, nil
	if flush != "" {
		tm.at = slices.Clone(cs.ResumeToken())
		tm.refusals = 0
	}

	if flush != "" {
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

// startPosition is where a (re)opened stream starts: the stored
// checkpoint, or this term's own position when that is newer. The
// term's position only moves past a change once its notices are
// acknowledged (or over a fully read empty batch), so resuming there
// leaves no gap; it spares re-publishing what the store has not caught up
// with, and a reopen does not depend on reading the store.
func (tm *term) startPosition(ctx context.Context) (checkpoint, bool, error) {
	mem := tm.pending
	if mem == nil {
		mem = tm.saved
	}
	stored, found, err := tm.store.load(ctx)
	if mem == nil || (err == nil && found && !tm.ownIsNewer(*mem, stored)) {
		return stored, found, err
	}
	if err != nil {
		tm.log.Debug().Err(err).Msg("checkpoint not readable: resuming from this term's own position")
	}
	return *mem, true, nil
}

// ownIsNewer reports whether the term's position mem is past stored.
// When stored is not what this term last wrote (a deposed leader's
// final write can land late), positions are compared by cluster time;
// without one on either side the store wins, as before. Either choice
// is gap-free: every writer stores only acknowledged positions.
func (tm *term) ownIsNewer(mem, stored checkpoint) bool {
	if tm.saved != nil && bytes.Equal(stored.Token, tm.saved.Token) {
		return true
	}
	if mem.ClusterTime == nil || stored.ClusterTime == nil {
		return false
	}
	a, b := *mem.ClusterTime, *stored.ClusterTime
	return a.T > b.T || (a.T == b.T && a.I > b.I)
}

// pipelineUnsupported switches to worker-side sizing when the server
// rejected the $bsonSize pipeline.
func (tm *term) pipelineUnsupported(err error) error {
	if !tm.serverSize {
		return fmt.Errorf("change stream pipeline refused: %w", err)
	}
	tm.serverSize, tm.sizeConclusive = false, true
	tm.localSizeWarned.Store(true)
	tm.log.Warn().Int("code", outage.FirstCode(err)).
		Msg("the server cannot evaluate $bsonSize: reopening with whole documents, sized by the worker")
	return errReopenNow
}

// open opens the change feed. The deadline (which the driver also sends
// as maxTimeMS) turns an open that hangs (a server or path that accepts
// connections but never answers) into a failure; the driver keeps no
// reference to ctx once Watch returns.
func (tm *term) open(ctx context.Context, from *checkpoint) (feedCursor, error) {
	octx, cancel := context.WithTimeout(ctx, tm.openTimeout())
	defer cancel()
	pipeline, opts := feedPipeline(tm.data.UserIDField, tm.serverSize), feedOptions(tm.cfg, from)
	return tm.feeds.open(octx, pipeline, from, opts)
}

// openTimeout is the time limit of the next open: a poll's, doubled for
// each open in a row that ran out of the server's time limit at the
// position (up to maxOpenTimeouts-1 doublings).
func (tm *term) openTimeout() time.Duration {
	return tm.cfg.feedOpTimeout() << min(tm.openTimeouts, maxOpenTimeouts-1)
}

// openTimedOut records that opening at pos ran out of the server's time
// limit and returns how often in a row it did at pos.
func (tm *term) openTimedOut(pos []byte) int {
	if !bytes.Equal(pos, tm.timeoutAt) {
		tm.openTimeouts, tm.timeoutAt = 0, pos
	}
	tm.openTimeouts++
	return tm.openTimeouts
}

// refused records a refusal (feedRefused) at the feed's position. The
// same refusal maxPositionRefusals times in a row at one position makes
// the next open start from now after a flush-all; it is logged once.
func (tm *term) refused(err error) {
	code := outage.FirstCode(err)
	if tm.at == nil {
		return // no position to blame: the next open starts from the checkpoint
	}
	if tm.refusals == 0 || code != tm.refusedCode || !bytes.Equal(tm.at, tm.refusedAt) {
		tm.refusals, tm.refusedCode, tm.refusedAt = 0, code, tm.at
	}
	tm.refusals++
	if tm.refusals == maxPositionRefusals && tm.distrust == "" {
		tm.distrust = events.FlushPositionUnreadable
		tm.log.Warn().Err(err).Int("code", code).Int("attempts", tm.refusals).
			Msg("the server refuses the change stream at the same position every time: starting from now after a flush-all")
	}
}

// close closes cs, bounded like a poll (killCursors on a hung connection
// would otherwise wait).
func (tm *term) close(ctx context.Context, cs feedCursor) {
	closeFeed(ctx, cs, tm.cfg.feedOpTimeout())
}

// consume handles events until the feed fails or ctx ends.
func (tm *term) consume(ctx context.Context, cs feedCursor) error {
	// Close feeds this function replaced (after an invalidate); the
	// caller closes the one it opened.
	first := cs
	defer func() {
		if cs != first {
			tm.close(ctx, cs)
		}
	}()
	// Whatever is in flight when the feed ends is waited for (bounded by
	// noticeAckTimeout, or the lease): on the way out the last checkpoint
	// includes it; after a failure the reopen starts after it.
	defer func() { _ = tm.reap(true) }()
	lastPoll := time.Now()
	for {
		if err := tm.reap(false); err != nil {
			return err
		}
		// Each poll has a deadline: the server answers an empty poll
		// after MaxAwaitTime, so one that takes much longer is hung and
		// counts as a failure (the feed is reopened, and a stall ends
		// the term) instead of blocking the leader forever.
		pctx, cancel := context.WithTimeout(ctx, tm.cfg.feedOpTimeout())
		got := cs.TryNext(pctx)
		cancel()
		if got {
			tm.progress()
			next, err := tm.handle(ctx, cs.Event())
			if err != nil {
				return err
			}
			if next != nil {
				if cs != first {
					tm.close(ctx, cs)
				}
				cs = next
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := cs.Err(); err != nil {
			if classifyFeedError(err) == feedPipelineUnsupported {
				return tm.pipelineUnsupported(err)
			}
			return fmt.Errorf("read change stream: %w", err)
		}
		tm.progress()
		if !tm.pub.pubFailed {
			// While notices keep failing to publish the notifier is not
			// healthy, however well the feed reads: only an acknowledged
			// notice ends that (publisher.acknowledged).
			tm.health.feedOK()
		}
		if tok := cs.ResumeToken(); tok != nil && !bytes.Equal(tok, tm.at) {
			tm.at = slices.Clone(tok)
		}
		// Idle: keep the checkpoint fresh. The server's post-batch resume
		// token moves on even without changes, which keeps the position
		// inside the oplog window on a quiet collection.
		// The post-batch token is past every change read, so it only
		// stands for them once all their notices are acknowledged (the
		// window is reaped at the top of the loop).
		if tok := cs.ResumeToken(); tok != nil && tm.pending == nil && tm.pub.inFlightCount() == 0 && !bytes.Equal(tok, tm.savedToken) &&
			time.Since(tm.lastCheckpoint) >= idleCheckpointInterval && !tm.afterFeedEnd {
			tm.pending = &checkpoint{Token: slices.Clone(tok)}
		}
		tm.savePending(ctx, false)
		if !tm.sizeConclusive && time.Since(tm.lastSizeProbe) >= sizeProbeInterval {
			tm.probeSize(ctx)
			if tm.serverSize {
				tm.savePending(ctx, true)
				tm.log.Info().Msg("the server evaluates $bsonSize: reopening with projected events")
				return errReopenNow
			}
		}
		// Servers hold an empty poll up to MaxAwaitTime; one that answers
		// at once must not be polled in a tight loop.
		if wait := tm.cfg.IdlePollInterval - time.Since(lastPoll); wait > 0 && !retry.Sleep(ctx, wait) {
			return ctx.Err()
		}
		lastPoll = time.Now()
	}
}

// handle publishes the notices of one event and advances the pending
// checkpoint. It returns a new feed when the event ended this one.
func (tm *term) handle(ctx context.Context, raw bson.Raw) (feedCursor, error) {
	mapper := noticeMapper{prefix: tm.cfg.SubjectPrefix, userIDField: tm.data.UserIDField,
		oversizeBytes: tm.cfg.OversizeBytes, measureFullDocument: !tm.serverSize, ignoreFields: tm.cfg.IgnoreFields}
	mc := mapper.mapChange(raw)
	if mc.Ignored {
		tm.metrics.ignored.Inc()
	}

	if mc.Invalidate {
		return tm.handleInvalidate(ctx, mc)
	}
	var pos *checkpoint
	if mc.Token != nil {
		pos = &checkpoint{Token: mc.Token, ClusterTime: mc.ClusterTime}
	}
	if mc.Flush != "" {
		// Flush-alls are rare and published synchronously, after every
		// earlier notice is acknowledged: the flush is then counted and
		// logged as published only once it is, its position can be
		// checkpointed at once (a forced write may not pass a notice
		// still in flight), and no retry of an earlier notice can land
		// after it.
		if err := tm.reap(true); err != nil {
			return nil, err
		}
		for _, p := range mc.Notices {
			if err := tm.pub.publish(ctx, p, mc.ClusterTime); err != nil {
				return nil, err
			}
		}
	} else {
		for i, p := range mc.Notices {
			var at *checkpoint
			if i == len(mc.Notices)-1 {
				at = pos // the change's position, once all its notices are acknowledged
			}
			acked, err := tm.pub.publishAsync(p, mc.ClusterTime, at)
			if acked != nil {
				tm.pending = acked
			}
			if err != nil {
				return nil, err
			}
		}
		if len(mc.Notices) == 0 && pos != nil {
			if acked := tm.pub.advance(pos); acked != nil {
				tm.pending = acked
			}
		}
	}
	switch mc.Flush {
	case events.FlushCollectionGone:
		tm.log.Warn().Str("operation", mc.Operation).Msg("collection dropped or renamed: published flush-all; watching for it to return")
		tm.hooks.collectionGone()
	case events.FlushUnattributable:
		if ok, held := tm.limiter.allow("unattributable"); ok {
			tm.log.Warn().Str("operation", mc.Operation).Int("suppressed", held).
				Msg("change event names neither a user nor a document _id: published flush-all")
		}
	}
	tm.afterFeedEnd = mc.Flush == events.FlushCollectionGone
	if mc.Oversize {
		tm.metrics.oversize.Inc()
		if ok, held := tm.limiter.allow("oversize"); ok {
			tm.log.Warn().Str("document_id", mc.DocumentID).Int64("bytes", mc.Size).Int("limit", tm.cfg.OversizeBytes).
				Int("suppressed", held).Msg("custom-data document exceeds the size limit")
		}
	}
	if mc.DuplicateCheckUser != "" {
		tm.hooks.changedUser(mc.DuplicateCheckUser)
	}
	if mc.Token != nil {
		tm.at = mc.Token
	}
	if mc.Flush != "" && pos != nil {
		tm.pending = pos
		tm.savePending(ctx, true)
		return nil, nil
	}
	// Otherwise the pending position moves as acknowledgements arrive and
	// is written every CheckpointInterval (and when the term ends): not
	// after every getMore batch, which under load would cost a KV write
	// every few changes.
	if err := tm.reap(false); err != nil {
		return nil, err
	}
	tm.savePending(ctx, false)
	return nil, nil
}

// reap moves the pending position to the last change whose notices, and
// all earlier ones, are acknowledged. With block it waits for every
// notice in flight; if the lease ends first, it returns the lease's cause.
func (tm *term) reap(block bool) error {
	acked, err := tm.pub.reap(block, false)
	if acked != nil {
		tm.pending = acked
	}
	if err == nil && block && tm.pub.inFlightCount() > 0 {
		err = fmt.Errorf("waiting for notice acknowledgements: %w", context.Cause(tm.pub.leaseCtx))
	}
	return err
}

// handleInvalidate opens the feed that follows an invalidate, then
// publishes its flush-all (unless the drop/rename just before it already
// did) and checkpoints the invalidate token for startAfter.
func (tm *term) handleInvalidate(ctx context.Context, mc mappedChange) (feedCursor, error) {
	if mc.Token == nil {
		return nil, errors.New("invalidate event without a resume token")
	}
	// Every earlier notice is acknowledged before the invalidate's
	// position (forced below) can be checkpointed.
	if err := tm.reap(true); err != nil {
		return nil, err
	}
	next := &checkpoint{Token: mc.Token, StartAfter: true, ClusterTime: mc.ClusterTime}
	cs, err := tm.open(ctx, next)
	if err != nil {
		// Retried from the last checkpoint, which precedes the invalidate.
		return nil, fmt.Errorf("reopen change stream after invalidate: %w", err)
	}
	if !tm.afterFeedEnd {
		for _, p := range mc.Notices {
			if err := tm.pub.publish(ctx, p, mc.ClusterTime); err != nil {
				tm.close(ctx, cs)
				return nil, err
			}
		}
		tm.log.Warn().Msg("change stream invalidated: published flush-all; watching again")
	}
	tm.afterFeedEnd = false
	tm.at = next.Token
	tm.pending = next
	tm.savePending(ctx, true)
	return cs, nil
}

// savePending writes the pending checkpoint when forced or when the last
// write is older than CheckpointInterval. A failed write keeps it pending:
// the checkpoint only lags, which costs duplicates on restart, never gaps.
func (tm *term) savePending(ctx context.Context, force bool) {
	if tm.pending == nil || ctx.Err() != nil || (!force && time.Since(tm.lastCheckpoint) < tm.cfg.CheckpointInterval) {
		return // on the way out run writes it with a fresh context
	}
	cp := *tm.pending
	cp.Instance = tm.cfg.InstanceID
	cp.WrittenAt = time.Now().UTC()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := tm.store.save(wctx, cp); err != nil {
		if ctx.Err() != nil {
			return // stopping: run writes it on the way out
		}
		if ok, held := tm.limiter.allow("checkpoint"); ok {
			tm.log.Warn().Err(err).Int("suppressed", held).Msg("checkpoint write failed; will retry")
		}
		return
	}
	tm.pending = nil
	tm.saved = &cp
	tm.savedToken = cp.Token
	tm.lastCheckpoint = cp.WrittenAt
	tm.metrics.checkpointWritten(cp.WrittenAt)
}

// closeFeed closes cs even when ctx has ended, waiting at most
// timeout.
func closeFeed(ctx context.Context, cs interface{ Close(context.Context) error }, timeout time.Duration) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	_ = cs.Close(cctx)
}
