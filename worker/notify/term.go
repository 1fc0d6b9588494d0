package notify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/outage"
	"github.com/customdata-worker/customdata-worker/internal/retry"
)

// errReopenNow asks for the stream to be reopened from the checkpoint at
// once (not a failure: e.g. the document-size mode changed).
var errReopenNow = errors.New("reopen the change stream")

// errStreamStalled ends a leadership term on purpose: the change stream
// made no progress for StallAfter while every attempt failed, so another
// replica, whose MongoDB may work, should lead.
var errStreamStalled = errors.New("change stream stalled")

// idleCheckpointInterval is how often an idle stream's position (the
// server's post-batch resume token) is checkpointed: often enough to stay
// far inside any oplog window, rarely enough to cost nothing.
const idleCheckpointInterval = 10 * time.Second

// maxOpenTimeouts bounds how often in a row opening the stream at one
// position may end in the server's time limit (MaxTimeMSExpired). Each
// retry doubles the open's time limit; past the bound the stream starts
// from now after a flush-all (position_unreadable).
const maxOpenTimeouts = 3

// maxPositionRefusals is how often in a row the server may refuse, with
// the same error, to open or read the stream at one position before the
// position counts as unreadable (e.g. BSONObjectTooLarge for a change
// whose event exceeds 16 MB): the stream then starts from now after a
// flush-all (position_unreadable) instead of reopening there forever.
const maxPositionRefusals = 3

// sizeProbeInterval is how often an inconclusive $bsonSize probe (empty
// collection) is repeated.
const sizeProbeInterval = 30 * time.Second

// streamSession runs the change stream for one leadership term. It is
// used by one goroutine.
type streamSession struct {
	n   *Notifier
	log zerolog.Logger
	// leaseCtx ends only when the lease is lost (or the term is over); a
	// publish attempt runs under it, so shutdown lets it finish while a
	// lost lease aborts it.
	leaseCtx context.Context
	term     uint64 // lease revision at acquisition; names "from now" flushes
	// opens counts streams opened from now in this term; it makes each
	// such flush's Msg-Id unique (two gaps are two causes).
	opens int

	serverSize     bool // the pipeline computes $bsonSize
	sizeConclusive bool
	lastSizeProbe  time.Time

	// pending is the position after the last acknowledged notice, not yet
	// written to the checkpoint store.
	pending *checkpoint
	// saved is the position this session last wrote to the store.
	saved          *checkpoint
	savedToken     []byte
	lastCheckpoint time.Time
	// afterStreamEnd: the previous event was a drop/rename/dropDatabase
	// whose flush covers the invalidate that follows it.
	afterStreamEnd bool

	// distrust: the server said, while reading, that the checkpoint's
	// history is gone; the next open starts from now with this flush.
	distrust events.FlushReason

	// failing: a failure was logged and the feed has made no progress
	// since (it is logged once per outage).
	failing bool

	// lastProgress is when the stream last yielded an event or answered a
	// poll (or the session started); failedSinceProgress says an attempt
	// failed since. Together they tell a stalled stream from a blip.
	lastProgress        time.Time
	failedSinceProgress bool

	// at is the stream's position: where it was opened, then the token of
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

// changeEvents is what the session reads a change stream through: the
// driver's *mongo.ChangeStream, or in tests one that fails the way a real
// server does and the stand-in cannot. Implementations must be comparable
// (the session tells streams apart with ==).
type changeEvents interface {
	TryNext(ctx context.Context) bool
	// Event is the event TryNext moved to (ChangeStream.Current).
	Event() bson.Raw
	Err() error
	ResumeToken() bson.Raw
	RemainingBatchLength() int
	Close(ctx context.Context) error
}

// driverChangeStream adapts *mongo.ChangeStream to changeEvents.
type driverChangeStream struct{ *mongo.ChangeStream }

func (d driverChangeStream) Event() bson.Raw { return d.Current }

// streamOpener opens the change stream at from (nil: from now).
// feedSource opens the change feed: the collection's Watch, or in tests
// one that fails the way a real server does and the stand-in cannot.
type feedSource interface {
	open(ctx context.Context, pipeline mongo.Pipeline, from *checkpoint,
		opts *options.ChangeStreamOptionsBuilder) (changeEvents, error)
}

// watchFeed is the production feedSource: the collection's Watch.
type watchFeed struct{ coll *mongo.Collection }

func (w watchFeed) open(ctx context.Context, pipeline mongo.Pipeline, _ *checkpoint,
	opts *options.ChangeStreamOptionsBuilder) (changeEvents, error) {
	cs, err := w.coll.Watch(ctx, pipeline, opts)
	if err != nil {
		return nil, err
	}
	return driverChangeStream{cs}, nil
}

func newStreamSession(n *Notifier, term uint64, leaseCtx context.Context) *streamSession {
	return &streamSession{n: n, log: n.log.With().Uint64("term", term).Logger(), term: term, leaseCtx: leaseCtx,
		lastProgress: time.Now()}
}

// progress records that the stream works.
// An open alone is not progress: with an empty first batch it succeeds
// even where every read fails.
func (s *streamSession) progress() {
	s.lastProgress = time.Now()
	if s.failedSinceProgress {
		s.n.health.streamOK()
	}
	s.failedSinceProgress = false
	if s.failing {
		s.failing = false
		s.log.Info().Msg("change stream reopened")
	}
}

// run keeps a change stream open and its notices flowing until ctx ends
// (nil) or the stream stalls (an error wrapping errStreamStalled): no
// progress for StallAfter and every attempt since failed.
func (s *streamSession) run(ctx context.Context) (stalled error) {
	s.probeSize(ctx)
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 100 * time.Millisecond
	bo.MaxInterval = s.n.cfg.RetryMaxInterval
	for ctx.Err() == nil {
		err := s.runStream(ctx)
		if ctx.Err() != nil {
			break
		}
		if errors.Is(err, errReopenNow) {
			bo.Reset()
			continue
		}
		class := classifyStreamError(err)
		switch class {
		case streamHistoryLost, streamTokenInvalid:
			// Reported while reading (some servers do): the checkpoint
			// cannot be resumed from either.
			s.distrust = flushReasonForRefusedToken(class)
		case streamRefused:
			s.refused(err)
		}
		s.n.metrics.streamErrors.WithLabelValues(class.String()).Inc()
		s.n.health.streamFailed(err)
		if !s.failing {
			s.log.Warn().Err(err).Str("class", class.String()).Int("code", outage.FirstCode(err)).
				Msg("change stream failed; reopening from the last checkpoint with backoff")
			s.failing = true
		}
		if !s.failedSinceProgress {
			// The feed made progress (an event or an answered poll) since
			// the last failure: a new outage starts the backoff over. An
			// open alone is no progress: with an empty first batch it
			// succeeds even where every read fails.
			bo.Reset()
		}
		s.failedSinceProgress = true
		stuck := time.Since(s.lastProgress)
		// An open that ran out of the server's time limit shows a server
		// that answers; another replica would meet the same scan. The
		// widening is bounded (maxOpenTimeouts), so the term goes on.
		widening := class == streamTimedOut && s.openTimeouts > 0 && s.openTimeouts < maxOpenTimeouts
		if stuck >= s.n.cfg.StallAfter && !widening {
			stalled = fmt.Errorf("%w: no progress for %s, last error: %w", errStreamStalled, stuck.Round(time.Millisecond), err)
			break
		}
		// Wake up at the stall deadline at the latest, so the step-down
		// is not late by a backoff interval.
		wait := bo.NextBackOff()
		if !widening {
			wait = min(wait, s.n.cfg.StallAfter-stuck)
		}
		if !retry.Sleep(ctx, wait) {
			break
		}
	}
	// Whatever was acknowledged is worth keeping, even on the way out.
	s.savePending(context.WithoutCancel(ctx), true)
	return stalled
}

// probeSize decides whether the server computes document sizes.
func (s *streamSession) probeSize(ctx context.Context) {
	s.lastSizeProbe = time.Now()
	// Bounded like a poll: a hung server must not hold the term here.
	pctx, cancel := context.WithTimeout(ctx, s.n.cfg.streamOpTimeout())
	defer cancel()
	s.serverSize, s.sizeConclusive = probeServerSize(pctx, s.n.coll)
	if !s.serverSize && s.sizeConclusive && s.n.warnedLocalSize.CompareAndSwap(false, true) {
		s.log.Warn().Msg("the server cannot evaluate $bsonSize: change events carry whole documents so the worker can size them")
	}
}

// runStream opens the change stream at the checkpoint (or from now, with a
// flush-all) and consumes it until an error.
func (s *streamSession) runStream(ctx context.Context) error {
	cp, found, err := s.startPosition(ctx)
	var flush events.FlushReason
	if err != nil {
		if !errors.Is(err, errCheckpointUnusable) {
			return err
		}
		s.log.Warn().Err(err).Msg("checkpoint unusable: starting from now after a flush-all")
		flush, found = events.FlushBadCheckpoint, false
	}
	if found && s.distrust != "" {
		if s.distrust != events.FlushPositionUnreadable { // refused logged that one
			s.log.Warn().Str("reason", string(s.distrust)).Msg("the server cannot resume from the checkpoint: starting from now after a flush-all")
		}
		flush, found = s.distrust, false
	}

	var cs changeEvents
	if found {
		s.at = cp.Token
		cs, err = s.open(ctx, &cp)
		if err != nil {
			class := classifyStreamError(err)
			switch class {
			case streamPipelineUnsupported:
				return s.pipelineUnsupported(err)
			case streamHistoryLost, streamTokenInvalid:
				flush = flushReasonForRefusedToken(class)
			case streamTimedOut:
				if n := s.openTimedOut(cp.Token); n < maxOpenTimeouts {
					return fmt.Errorf("resume change stream (timed out %d times at this position; next open may take %s): %w",
						n, s.openTimeout(), err)
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
			cs, err = s.open(ctx, nil)
			if err != nil {
				return fmt.Errorf("open change stream after the checkpoint was refused (%v): %w", refused, err)
			}
			s.log.Warn().Str("class", class.String()).Int("code", outage.FirstCode(refused)).Str("reason", string(flush)).
				Int("attempts", max(1, s.openTimeouts)).
				Msg("the server cannot resume from the checkpoint: starting from now after a flush-all")
		}
	} else {
		if flush == "" {
			flush = events.FlushNoCheckpoint
		}
		if cs, err = s.open(ctx, nil); err != nil {
			if classifyStreamError(err) == streamPipelineUnsupported {
				return s.pipelineUnsupported(err)
			}
			if s.distrust == events.FlushPositionUnreadable {
				// The stream fails from now too: the position was not the
				// cause. Back to the checkpoint, counting afresh.
				s.distrust, s.refusals = "", 0
				s.log.Info().Msg("the change stream cannot be opened from now either: resuming from the checkpoint again")
			}
			return fmt.Errorf("open change stream: %w", err)
		}
	}
	defer func() { s.close(ctx, cs) }()
	s.afterStreamEnd = false
	s.distrust = ""
	s.openTimeouts, s.timeoutAt = 0, nil
	if flush != "" {
		s.at = slices.Clone(cs.ResumeToken())
		s.refusals = 0
	}

	if flush != "" {
		// The stream is open before the flush is published, so every
		// change the flush does not cover is seen by the stream.
		s.opens++
		if err := s.publishFlush(ctx, flush, ""); err != nil {
			return err
		}
		s.log.Warn().Str("reason", string(flush)).Msg("published flush-all: continuity with the previous position is unknown")
		// Servers that report a resume token before the first event give
		// a checkpoint right away; otherwise the first event does.
		if tok := cs.ResumeToken(); tok != nil {
			s.pending = &checkpoint{Token: slices.Clone(tok)}
			s.savePending(ctx, true)
		}
	}
	return s.consume(ctx, cs)
}

// startPosition is where a (re)opened stream starts: the stored
// checkpoint, or this session's own position when that is newer. The
// session's position only moves past a change once its notices are
// acknowledged (or over a fully read empty batch), so resuming there
// leaves no gap; it spares re-publishing what the store has not caught up
// with, and a reopen does not depend on reading the store.
func (s *streamSession) startPosition(ctx context.Context) (checkpoint, bool, error) {
	mem := s.pending
	if mem == nil {
		mem = s.saved
	}
	stored, found, err := s.n.checkpoints.load(ctx)
	if mem == nil || (err == nil && found && !s.ownIsNewer(*mem, stored)) {
		return stored, found, err
	}
	if err != nil {
		s.log.Debug().Err(err).Msg("checkpoint not readable: resuming from this term's own position")
	}
	return *mem, true, nil
}

// ownIsNewer reports whether the session's position mem is past stored.
// When stored is not what this session last wrote (a deposed leader's
// final write can land late), positions are compared by cluster time;
// without one on either side the store wins, as before. Either choice
// is gap-free: every writer stores only acknowledged positions.
func (s *streamSession) ownIsNewer(mem, stored checkpoint) bool {
	if s.saved != nil && bytes.Equal(stored.Token, s.saved.Token) {
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
func (s *streamSession) pipelineUnsupported(err error) error {
	if !s.serverSize {
		return fmt.Errorf("change stream pipeline refused: %w", err)
	}
	s.serverSize, s.sizeConclusive = false, true
	s.n.warnedLocalSize.Store(true)
	s.log.Warn().Int("code", outage.FirstCode(err)).
		Msg("the server cannot evaluate $bsonSize: reopening with whole documents, sized by the worker")
	return errReopenNow
}

// open opens the change stream. The deadline (which the driver also sends
// as maxTimeMS) turns an open that hangs (a server or path that accepts
// connections but never answers) into a failure; the driver keeps no
// reference to ctx once Watch returns.
func (s *streamSession) open(ctx context.Context, from *checkpoint) (changeEvents, error) {
	octx, cancel := context.WithTimeout(ctx, s.openTimeout())
	defer cancel()
	pipeline, opts := changeStreamPipeline(s.n.cfg.UserIDField, s.serverSize), s.n.watchOptions(from)
	return s.n.feeds.open(octx, pipeline, from, opts)
}

// openTimeout is the time limit of the next open: a poll's, doubled for
// each open in a row that ran out of the server's time limit at the
// position (up to maxOpenTimeouts-1 doublings).
func (s *streamSession) openTimeout() time.Duration {
	return s.n.cfg.streamOpTimeout() << min(s.openTimeouts, maxOpenTimeouts-1)
}

// openTimedOut records that opening at pos ran out of the server's time
// limit and returns how often in a row it did at pos.
func (s *streamSession) openTimedOut(pos []byte) int {
	if !bytes.Equal(pos, s.timeoutAt) {
		s.openTimeouts, s.timeoutAt = 0, pos
	}
	s.openTimeouts++
	return s.openTimeouts
}

// refused records a refusal (streamRefused) at the stream's position. The
// same refusal maxPositionRefusals times in a row at one position makes
// the next open start from now after a flush-all; it is logged once.
func (s *streamSession) refused(err error) {
	code := outage.FirstCode(err)
	if s.at == nil {
		return // no position to blame: the next open starts from the checkpoint
	}
	if s.refusals == 0 || code != s.refusedCode || !bytes.Equal(s.at, s.refusedAt) {
		s.refusals, s.refusedCode, s.refusedAt = 0, code, s.at
	}
	s.refusals++
	if s.refusals == maxPositionRefusals && s.distrust == "" {
		s.distrust = events.FlushPositionUnreadable
		s.log.Warn().Err(err).Int("code", code).Int("attempts", s.refusals).
			Msg("the server refuses the change stream at the same position every time: starting from now after a flush-all")
	}
}

// close closes cs, bounded like a poll (killCursors on a hung connection
// would otherwise wait).
func (s *streamSession) close(ctx context.Context, cs changeEvents) {
	closeChangeStream(ctx, cs, s.n.cfg.streamOpTimeout())
}

// consume handles events until the stream fails or ctx ends.
func (s *streamSession) consume(ctx context.Context, cs changeEvents) error {
	// Close streams this function replaced (after an invalidate); the
	// caller closes the one it opened.
	first := cs
	defer func() {
		if cs != first {
			s.close(ctx, cs)
		}
	}()
	lastPoll := time.Now()
	for {
		// Each poll has a deadline: the server answers an empty poll
		// after MaxAwaitTime, so one that takes much longer is hung and
		// counts as a failure (the stream is reopened, and a stall ends
		// the term) instead of blocking the leader forever.
		pctx, cancel := context.WithTimeout(ctx, s.n.cfg.streamOpTimeout())
		got := cs.TryNext(pctx)
		cancel()
		if got {
			s.progress()
			next, err := s.handle(ctx, cs, cs.Event())
			if err != nil {
				return err
			}
			if next != nil {
				if cs != first {
					s.close(ctx, cs)
				}
				cs = next
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := cs.Err(); err != nil {
			if classifyStreamError(err) == streamPipelineUnsupported {
				return s.pipelineUnsupported(err)
			}
			return fmt.Errorf("read change stream: %w", err)
		}
		s.progress()
		s.n.health.streamOK()
		if tok := cs.ResumeToken(); tok != nil && !bytes.Equal(tok, s.at) {
			s.at = slices.Clone(tok)
		}
		// Idle: keep the checkpoint fresh. The server's post-batch resume
		// token moves on even without changes, which keeps the position
		// inside the oplog window on a quiet collection.
		if tok := cs.ResumeToken(); tok != nil && s.pending == nil && !bytes.Equal(tok, s.savedToken) &&
			time.Since(s.lastCheckpoint) >= idleCheckpointInterval && !s.afterStreamEnd {
			s.pending = &checkpoint{Token: slices.Clone(tok)}
		}
		s.savePending(ctx, false)
		if !s.sizeConclusive && time.Since(s.lastSizeProbe) >= sizeProbeInterval {
			s.probeSize(ctx)
			if s.serverSize {
				s.savePending(ctx, true)
				s.log.Info().Msg("the server evaluates $bsonSize: reopening with projected events")
				return errReopenNow
			}
		}
		// Servers hold an empty poll up to MaxAwaitTime; one that answers
		// at once must not be polled in a tight loop.
		if wait := s.n.cfg.IdlePollInterval - time.Since(lastPoll); wait > 0 && !retry.Sleep(ctx, wait) {
			return ctx.Err()
		}
		lastPoll = time.Now()
	}
}

// handle publishes the notices of one event and advances the pending
// checkpoint. It returns a new stream when the event ended this one.
func (s *streamSession) handle(ctx context.Context, cs changeEvents, raw bson.Raw) (changeEvents, error) {
	mapper := s.n.mapper
	mapper.measureFullDocument = !s.serverSize
	mc := mapper.mapChange(raw)

	if mc.Invalidate {
		return s.handleInvalidate(ctx, mc)
	}
	for _, p := range mc.Notices {
		if err := s.publish(ctx, p, mc.ClusterTime); err != nil {
			return nil, err
		}
	}
	switch mc.Flush {
	case events.FlushCollectionGone:
		s.n.metrics.flushes.WithLabelValues(string(mc.Flush)).Inc()
		s.log.Warn().Str("operation", mc.Operation).Msg("collection dropped or renamed: published flush-all; watching for it to return")
		s.n.collectionGone()
	case events.FlushUnattributable:
		s.n.metrics.flushes.WithLabelValues(string(mc.Flush)).Inc()
		if ok, held := s.n.limiter.allow("unattributable"); ok {
			s.log.Warn().Str("operation", mc.Operation).Int("suppressed", held).
				Msg("change event names neither a user nor a document _id: published flush-all")
		}
	}
	s.afterStreamEnd = mc.Flush == events.FlushCollectionGone
	if mc.Oversize {
		s.n.metrics.oversize.Inc()
		if ok, held := s.n.limiter.allow("oversize"); ok {
			s.log.Warn().Str("document_id", mc.DocumentID).Int64("bytes", mc.Size).Int("limit", s.n.cfg.OversizeBytes).
				Int("suppressed", held).Msg("custom-data document exceeds the size limit")
		}
	}
	if mc.DuplicateCheckUser != "" {
		s.n.dupGuard.enqueue(mc.DuplicateCheckUser)
	}
	if mc.Token != nil {
		s.at = mc.Token
		s.pending = &checkpoint{Token: mc.Token, ClusterTime: mc.ClusterTime}
		s.savePending(ctx, cs.RemainingBatchLength() == 0 || mc.Flush != "")
	}
	return nil, nil
}

// handleInvalidate opens the stream that follows an invalidate, then
// publishes its flush-all (unless the drop/rename just before it already
// did) and checkpoints the invalidate token for startAfter.
func (s *streamSession) handleInvalidate(ctx context.Context, mc mappedChange) (changeEvents, error) {
	if mc.Token == nil {
		return nil, errors.New("invalidate event without a resume token")
	}
	next := &checkpoint{Token: mc.Token, StartAfter: true, ClusterTime: mc.ClusterTime}
	cs, err := s.open(ctx, next)
	if err != nil {
		// Retried from the last checkpoint, which precedes the invalidate.
		return nil, fmt.Errorf("reopen change stream after invalidate: %w", err)
	}
	if !s.afterStreamEnd {
		for _, p := range mc.Notices {
			if err := s.publish(ctx, p, mc.ClusterTime); err != nil {
				s.close(ctx, cs)
				return nil, err
			}
		}
		s.n.metrics.flushes.WithLabelValues(string(events.FlushInvalidated)).Inc()
		s.log.Warn().Msg("change stream invalidated: published flush-all; watching again")
	}
	s.afterStreamEnd = false
	s.at = next.Token
	s.pending = next
	s.savePending(ctx, true)
	return cs, nil
}

// publishFlush publishes a flush-all that no change event names (the
// stream was opened from now). Its Msg-Id is unique per open, so a retry
// of this publish is stored once but a later gap is flushed again.
func (s *streamSession) publishFlush(ctx context.Context, reason events.FlushReason, operation string) error {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s|%s|%d|%d", reason, s.n.lease.Session(), s.term, s.opens))
	p := plannedNotice{
		Subject: events.FlushAllSubject(s.n.cfg.SubjectPrefix),
		MsgID:   "fa-" + hex.EncodeToString(sum[:])[:32],
		Notice: events.Notice{
			SchemaVersion: events.NoticeSchemaVersion,
			Kind:          events.NoticeFlushAll,
			Operation:     operation,
			Reason:        reason,
		},
	}
	if err := s.publish(ctx, p, nil); err != nil {
		return err
	}
	s.n.metrics.flushes.WithLabelValues(string(reason)).Inc()
	return nil
}

// publish publishes one notice and waits for JetStream's acknowledgement,
// retrying with backoff until it is acknowledged or ctx ends (the lease
// was lost or the worker stops). A notice is never skipped.
func (s *streamSession) publish(ctx context.Context, p plannedNotice, ct *events.ClusterTime) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 50 * time.Millisecond
	bo.MaxInterval = s.n.cfg.RetryMaxInterval
	failed := false
	_, err := retry.Forever(ctx, bo, func() (struct{}, error) {
		p.Notice.PublishedAt = time.Now().UTC()
		data, err := json.Marshal(p.Notice)
		if err != nil {
			return struct{}{}, retry.Stop(fmt.Errorf("encode notice: %w", err))
		}
		msg := &nats.Msg{Subject: p.Subject, Data: data, Header: nats.Header{}}
		pctx, cancel := context.WithTimeout(s.leaseCtx, 10*time.Second)
		ack, err := s.n.js.PublishMsg(pctx, msg, jetstream.WithMsgID(p.MsgID), jetstream.WithExpectStream(s.n.cfg.Stream))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return struct{}{}, retry.Stop(ctx.Err())
			}
			if s.leaseCtx.Err() != nil {
				return struct{}{}, retry.Stop(s.leaseCtx.Err())
			}
			return struct{}{}, err
		}
		kind := string(p.Notice.Kind)
		s.n.metrics.published.WithLabelValues(kind, p.Notice.Operation).Inc()
		if ct != nil {
			s.n.metrics.latency.Observe(max(0, time.Since(ct.Time()).Seconds()))
		}
		if ack.Duplicate {
			s.log.Debug().Str("msg_id", p.MsgID).Msg("notice already stored (de-duplicated)")
		}
		if failed {
			s.n.health.streamOK()
			s.log.Info().Msg("publishing notices again")
		}
		return struct{}{}, nil
	}, func(err error, first bool) {
		s.n.health.streamFailed(err)
		failed = true
		if first {
			s.log.Warn().Err(err).Str("msg_id", p.MsgID).Msg("notice publish failed; retrying with backoff (the change stream waits)")
		}
	})
	return err
}

// savePending writes the pending checkpoint when forced or when the last
// write is older than CheckpointInterval. A failed write keeps it pending:
// the checkpoint only lags, which costs duplicates on restart, never gaps.
func (s *streamSession) savePending(ctx context.Context, force bool) {
	if s.pending == nil || ctx.Err() != nil || (!force && time.Since(s.lastCheckpoint) < s.n.cfg.CheckpointInterval) {
		return // on the way out run writes it with a fresh context
	}
	cp := *s.pending
	cp.Instance = s.n.cfg.InstanceID
	cp.WrittenAt = time.Now().UTC()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.n.checkpoints.save(wctx, cp); err != nil {
		if ctx.Err() != nil {
			return // stopping: run writes it on the way out
		}
		if ok, held := s.n.limiter.allow("checkpoint"); ok {
			s.log.Warn().Err(err).Int("suppressed", held).Msg("checkpoint write failed; will retry")
		}
		return
	}
	s.pending = nil
	s.saved = &cp
	s.savedToken = cp.Token
	s.lastCheckpoint = cp.WrittenAt
	s.n.metrics.checkpointWritten(cp.WrittenAt)
}

// closeChangeStream closes cs even when ctx has ended, waiting at most
// timeout.
func closeChangeStream(ctx context.Context, cs interface{ Close(context.Context) error }, timeout time.Duration) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	_ = cs.Close(cctx)
}
