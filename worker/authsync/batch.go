package authsync

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/retry"
	"github.com/customdata-worker/customdata-worker/triggers"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

const unknownOperation = "unknown"

// authItem is one message of a batch on its way through the batch.
type authItem struct {
	msg     jetstream.Msg
	meta    *jetstream.MsgMetadata
	op      string // operation label; "unknown" until decoded
	eventID string
	userID  string // set once decoded
	// resolved is set (by resolve) once the message is to be acked, Nak'd
	// or terminated; the in-progress heartbeat skips it from then on.
	resolved atomic.Bool
	// progress makes the heartbeat's check of resolved and its in-progress
	// ack one step that resolve waits for: an in-progress ack sent after
	// a Nak with delay would reset that delay to AckWait on the server,
	// and a CREATE held back behind the Nak'd DELETE of its user would
	// then come back first.
	progress sync.Mutex

	writes    int // writes the triggers decided
	remaining int // writes not yet acknowledged by MongoDB
	failure   customdata.Fault
	failErr   error
	// holdFor: held back behind an event of its user sent back by an
	// earlier batch; not due again before that one is.
	holdFor time.Duration
	// heldOutside: held back behind such an event (not in this batch).
	heldOutside bool
	// requeue: shutdown came while MongoDB was unavailable; redeliver
	// without delay and without blame.
	requeue bool
	// sentBack: settled in a way that lets it come back and be applied
	// later (Nak'd, or a dead letter whose termination is unconfirmed);
	// the later events of its user must then not overtake it.
	sentBack bool
}

// resolve marks the message settled for the heartbeat before it is acked,
// Nak'd or terminated: once it returns, no in-progress ack of the message
// is sent any more, nor one still under way (it has gone out before).
func (it *authItem) resolve() {
	it.progress.Lock()
	it.resolved.Store(true)
	it.progress.Unlock()
}

// heldBackOnly reports whether the item failed only because it was held
// back behind an earlier event of its user.
func (it *authItem) heldBackOnly() bool {
	return it.failure == customdata.Retry && errors.Is(it.failErr, errBlockedByEarlierWrite) && !it.requeue
}

// runAgain clears what a pass over the batch decided for the item, so
// that the next pass decides it afresh.
func (it *authItem) runAgain() {
	it.writes, it.remaining = 0, 0
	it.failure, it.failErr = customdata.OK, nil
	it.holdFor, it.heldOutside = 0, false
}

func (it *authItem) numDelivered() uint64 {
	if it.meta == nil {
		return 1
	}
	return it.meta.NumDelivered
}

func (it *authItem) streamSeq() uint64 {
	if it.meta == nil {
		return 0
	}
	return it.meta.Sequence.Stream
}

// fail records a failure; the worst class wins.
func (it *authItem) fail(f customdata.Fault, err error) {
	if it.failErr == nil || f > it.failure {
		it.failure, it.failErr = f, err
	}
}

// batchStats collects what a batch logs once at its end.
type batchStats struct {
	ackFailures, nakFailures, dlqFailures int
	lastAckErr, lastDLQErr                error
	deadLettered                          map[string]int // by reason
	deadLetteredSeqs                      []uint64       // first few, for the log
	// nakDelay is, by user, the longest redelivery delay given so far in
	// this batch: a later message of that user is never sent back with a
	// shorter one, so it cannot come back before the message that held it
	// back (a CREATE before a failed DELETE).
	nakDelay map[string]time.Duration
	// acks: the applied messages of the current pass, in stream order,
	// for ackApplied to acknowledge together.
	acks []*authItem
}

// maxLoggedSeqs bounds the stream sequences one batch log line names.
const maxLoggedSeqs = 10

// processBatch handles one fetched batch completely. ctx is the shutdown
// signal: it only cuts short an in-place retry while MongoDB is down; the
// batch's own writes, acks and dead letters run on a context that
// shutdown does not cancel, so an in-flight batch is finished.
func (a *Consumer) processBatch(ctx context.Context, msgs []jetstream.Msg) {
	work := context.WithoutCancel(ctx)
	a.metrics.batchSize.Observe(float64(len(msgs)))
	items := make([]*authItem, len(msgs))
	store := make([]authItem, len(msgs)) // one allocation for the batch
	for i, m := range msgs {
		it := &store[i]
		it.msg, it.op = m, unknownOperation
		it.meta, _ = m.Metadata()
		items[i] = it
	}
	stopHeartbeat := a.startHeartbeat(items)
	defer stopHeartbeat()

	var stats batchStats
	// Each pass decides, applies and settles its events; the events held
	// back only behind events of their user that the pass dead-lettered
	// for good are no longer held back and run again (a smaller set each
	// time: their blockers are settled).
	for pass := items; len(pass) > 0; {
		if planned := a.decide(work, pass, &stats); len(planned.writes) > 0 {
			a.applyWrites(ctx, work, pass, planned)
		}
		pass = a.settle(work, pass, &stats)
		a.ackApplied(work, &stats)
	}
	if stats.ackFailures > 0 {
		a.log.Warn().Err(stats.lastAckErr).Int("messages", stats.ackFailures).
			Msg("acknowledging applied auth events failed; they will be redelivered and re-applied (writes are idempotent)")
	}
	if stats.nakFailures > 0 {
		a.log.Warn().Int("messages", stats.nakFailures).
			Msg("sending Nak/Term for auth events failed; the server redelivers them after ack wait")
	}
	if len(stats.deadLettered) > 0 {
		a.log.Warn().Interface("reasons", stats.deadLettered).Interface("stream_seqs", stats.deadLetteredSeqs).
			Msg("auth events dead-lettered")
	}
	if stats.dlqFailures > 0 {
		a.log.Warn().Err(stats.lastDLQErr).Int("messages", stats.dlqFailures).
			Msg("publishing dead letters failed; the messages were Nak'd and will be dead-lettered on redelivery")
	}
}

// decide decodes every message and runs the triggers. Messages that cannot
// be processed are dead-lettered here; those to be retried
// (customdata.Retry: this delivery failed, a later one may work) are
// marked, and Nak'd by finish after the writes of the earlier messages of
// their user are settled. The writes of the others are returned in stream
// order, each with its message.
func (a *Consumer) decide(ctx context.Context, items []*authItem, stats *batchStats) (planned plannedWrites) {
	// Policies for every event are middleware around the trigger set;
	// the writer is looked up per batch (tests replace it).
	handler := triggers.Chain(triggers.HandlerFunc(a.set.Decide), triggers.Recover(), triggers.CheckWrites(a.writer.Check))
	order := newBatchOrder(items, a.holds)
	for _, it := range items {
		ev, reason, err := a.admit(it)
		if err != nil {
			a.deadLetter(ctx, it, reason, err, stats)
			continue
		}
		if order.holdBack(it, ev.User.ID) {
			continue
		}
		ws, err := handler.Handle(ev)
		switch {
		case errors.Is(err, triggers.ErrPermanent):
			a.deadLetter(ctx, it, events.DeadLetterTriggerError, err, stats)
		case err != nil:
			it.fail(customdata.Retry, err)
			order.sentBack(ev.User.ID)
		default:
			it.writes, it.remaining = len(ws), len(ws)
			for _, w := range ws {
				planned.add(w, it)
			}
		}
	}
	return planned
}

// admit reads the event a message carries, or says why it must be
// dead-lettered (with its Dlq-Reason): a signature that does not verify
// (when signers are trusted), a body the decoder rejects, a subject that
// does not carry the event's operation. Nothing of an unverified body is
// decoded.
func (a *Consumer) admit(it *authItem) (events.AuthEvent, string, error) {
	if a.verifier != nil {
		if err := a.verifier.Verify(a.cfg.SubjectPrefix, it.msg.Subject(), it.msg.Headers(), it.msg.Data()); err != nil {
			return events.AuthEvent{}, deadLetterReason(err), err
		}
	}
	ev, err := a.decoder.DecodeWithFallbackID(it.msg.Data(), fallbackEventID(it.msg, it.meta))
	if err != nil {
		return events.AuthEvent{}, deadLetterReason(err), err
	}
	it.op, it.eventID, it.userID = string(ev.OperationType), ev.ID, ev.User.ID
	if op, ok := events.OperationForSubject(a.cfg.SubjectPrefix, it.msg.Subject()); !ok || op != ev.OperationType {
		return events.AuthEvent{}, string(events.ReasonSubjectMismatch),
			fmt.Errorf("subject %s does not carry operation %s", it.msg.Subject(), ev.OperationType)
	}
	return ev, "", nil
}

// plannedWrites are the writes of one pass in stream order and the message
// each came from (owner[i] decided writes[i]). The writes stay a slice of
// their own: triggers.CoalesceShared reads them as they are, and its
// Merged.From indexes them.
type plannedWrites struct {
	writes []triggers.Write
	owner  []*authItem
}

func (p *plannedWrites) add(w triggers.Write, it *authItem) {
	p.writes = append(p.writes, w)
	p.owner = append(p.owner, it)
}

// owners counts the messages the source writes of m came from.
func (p plannedWrites) owners(m triggers.Merged) int {
	seen := map[*authItem]bool{}
	for _, w := range m.From {
		seen[p.owner[w]] = true
	}
	return len(seen)
}

// fail fails the messages the source writes of m came from.
func (p plannedWrites) fail(m triggers.Merged, f customdata.Fault, err error) {
	for _, w := range m.From {
		p.owner[w].fail(f, err)
	}
}

// applyWrites coalesces the batch's writes and executes the rounds in
// order, one unordered BulkWrite each. A failed operation fails its own
// messages, and blocks the later rounds of the same user in this batch.
func (a *Consumer) applyWrites(ctx, work context.Context, items []*authItem, planned plannedWrites) {
	// The writes are only read from here on: no copies needed.
	rounds := triggers.CoalesceShared(planned.writes)
	blocked := map[string]bool{}
	for r, round := range rounds {
		var ops []triggers.Merged
		for _, m := range round {
			if m.Write.IsNoop() && !blocked[m.Write.UserID] {
				// Its inputs cancel out: nothing to send, they are done.
				for _, w := range m.From {
					planned.owner[w].remaining--
				}
				continue
			}
			if blocked[m.Write.UserID] {
				planned.fail(m, customdata.Retry, errBlockedByEarlierWrite)
				continue
			}
			ops = append(ops, m)
		}
		if len(ops) == 0 {
			continue
		}
		opWrites := make([]triggers.Write, len(ops))
		for i, m := range ops {
			opWrites[i] = m.Write
		}
		failures, errs, interrupted := a.writeRound(ctx, work, opWrites)
		if interrupted {
			a.requeueUnfinished(items, r, len(rounds))
			return
		}
		for i, m := range ops {
			switch {
			case failures[i] == customdata.OK:
				for _, w := range m.From {
					planned.owner[w].remaining--
				}
			case failures[i] == customdata.Permanent && planned.owners(m) > 1:
				// A merged operation failed for good: find the culprit by
				// applying the source writes one at a time, in order.
				allOK, interrupted := a.isolate(ctx, work, planned, m)
				if interrupted {
					a.requeueUnfinished(items, r, len(rounds))
					return
				}
				if !allOK {
					blocked[m.Write.UserID] = true
				}
			default:
				planned.fail(m, failures[i], errs[i])
				blocked[m.Write.UserID] = true
			}
		}
	}
}

// isolate applies the source writes of a failed merged operation one by
// one. It reports whether all of them succeeded. Once a write fails in a
// way that will be retried, the later ones wait for it (they are sent back
// too), as in decide: applied now, they would be overtaken by it.
func (a *Consumer) isolate(ctx, work context.Context, planned plannedWrites, m triggers.Merged) (allOK, interrupted bool) {
	allOK = true
	held := false
	for _, w := range m.From {
		it := planned.owner[w]
		if it.failErr != nil {
			allOK = false
			continue
		}
		if held {
			it.fail(customdata.Retry, errBlockedByEarlierWrite)
			allOK = false
			continue
		}
		failures, errs, interrupted := a.writeRound(ctx, work, []triggers.Write{planned.writes[w]})
		if interrupted {
			return false, true
		}
		if failures[0] == customdata.OK {
			it.remaining--
			continue
		}
		it.fail(failures[0], errs[0])
		allOK = false
		held = failures[0] != customdata.Permanent
	}
	return allOK, false
}

// requeueUnfinished handles shutdown while MongoDB is unavailable:
// messages whose writes are not all durable go back to the stream,
// unblamed (Nak without delay).
func (a *Consumer) requeueUnfinished(items []*authItem, round, rounds int) {
	n := 0
	for _, it := range items {
		if it.remaining > 0 && it.failErr == nil && !it.resolved.Load() {
			it.requeue = true
			n++
		}
	}
	a.log.Info().Int("round", round).Int("rounds", rounds).Int("messages", n).
		Msg("shutting down while MongoDB is unavailable; returning unfinished auth events to the stream")
}

// writeRound executes one round. Operations that fail for infrastructure
// reasons are retried in place with exponential backoff (the messages are
// kept, their AckWait extended by the heartbeat) until they succeed or
// shutdown comes, in which case interrupted is true.
func (a *Consumer) writeRound(ctx, work context.Context, writes []triggers.Write) (failures []customdata.Fault, errs []error, interrupted bool) {
	n := len(writes)
	failures, errs = make([]customdata.Fault, n), make([]error, n)
	pending := make([]int, n)
	for i := range pending {
		pending[i] = i
	}
	var infraErr error
	// One round over the pending writes; the writes MongoDB was
	// unavailable for stay pending and are retried in place.
	round := func() (struct{}, error) {
		batch := make([]triggers.Write, len(pending))
		for j, i := range pending {
			batch[j] = writes[i]
			kind := "update"
			if writes[i].Delete {
				kind = "delete"
			}
			a.metrics.writeOps.WithLabelValues(kind).Inc()
		}
		opCtx, cancel := context.WithTimeout(work, a.data.WriteTimeout)
		start := time.Now()
		f, e := a.writer.Apply(opCtx, batch)
		a.metrics.writeLatency.Observe(time.Since(start).Seconds())
		cancel()

		var infra []int
		for j, i := range pending {
			if f[j] == customdata.Outage {
				infra = append(infra, i)
				infraErr = e[j]
				continue
			}
			failures[i], errs[i] = f[j], e[j]
		}
		pending = infra
		if len(infra) > 0 {
			return struct{}{}, infraErr
		}
		return struct{}{}, nil
	}
	_, err := retry.Forever(ctx, retry.NewBackOff(defaultAuthRetryInitial, a.cfg.RetryMaxInterval), round,
		func(err error, _ bool) { a.mongoFailed(err) })
	if err == nil {
		a.mongoSucceeded()
		return failures, errs, false
	}
	// Stopping: the writes still pending were not applied.
	a.mongoFailed(infraErr)
	for _, i := range pending {
		failures[i], errs[i] = customdata.Outage, infraErr
	}
	return failures, errs, true
}
