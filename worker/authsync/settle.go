package authsync

import (
	"context"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

// settle settles the messages of one pass over a batch in stream order and
// returns those to run again in this batch: the messages held back only
// behind earlier events of their user in the pass that are now
// dead-lettered for good (their termination confirmed by the server).
// Nothing can then come before them, so applying them now keeps the
// user's order, and they do not burn deliveries (or reach MaxDeliver)
// waiting for an event that will never be applied. A message held back
// behind an event that was sent back (or is held back by one from an
// earlier batch) is settled as before: Nak'd behind it.
func (a *Consumer) settle(ctx context.Context, items []*authItem, stats *batchStats) (again []*authItem) {
	out := map[string]bool{} // users with an event in this pass that may still be applied later
	for _, it := range items {
		if !it.resolved.Load() {
			if it.heldBackOnly() && !it.heldOutside && !out[it.userID] {
				it.runAgain()
				again = append(again, it)
				continue
			}
			a.finish(ctx, it, stats)
		}
		if it.sentBack && it.userID != "" {
			out[it.userID] = true
		}
	}
	return again
}

// sendBack Naks a message for redelivery after delay, or after the delay of
// an earlier message of its user sent back in this batch (or of the event
// it is held back behind) when that is longer, remembers it and returns
// the delay given.
func (a *Consumer) sendBack(it *authItem, delay time.Duration, stats *batchStats) time.Duration {
	it.sentBack = true
	if it.userID != "" {
		if stats.nakDelay == nil {
			stats.nakDelay = map[string]time.Duration{}
		}
		delay = max(delay, stats.nakDelay[it.userID], it.holdFor)
		stats.nakDelay[it.userID] = delay
	}
	if err := it.msg.NakWithDelay(delay); err != nil {
		stats.nakFailures++
	}
	a.holds.sentBack(it.userID, it.streamSeq(), time.Now().Add(delay), time.Now())
	return delay
}

// terminate tells the server never to redeliver the message. While
// connected it waits for the server's confirmation (the server answers a
// termination sent as a request, as it does a double ack); confirmed is
// false when it could not be confirmed (the message may then come back
// after AckWait).
func (a *Consumer) terminate(ctx context.Context, it *authItem) (confirmed bool, err error) {
	reply := it.msg.Reply()
	if reply == "" || !a.js.Conn().IsConnected() {
		return false, it.msg.Term()
	}
	tctx, cancel := context.WithTimeout(ctx, defaultAuthOperationTimeout)
	defer cancel()
	if _, err := a.js.Conn().RequestWithContext(tctx, reply, []byte("+TERM")); err != nil {
		return false, err
	}
	return true, nil
}

// lastServerDelivery reports whether the server will not deliver a
// message again after its numDelivered-th delivery: the consumer's
// max_deliver (unlimited when the worker provisions it) is reached.
func (a *Consumer) lastServerDelivery(numDelivered uint64) bool {
	a.mu.Lock()
	cons := a.consumer
	a.mu.Unlock()
	if cons == nil {
		return true
	}
	info := cons.CachedInfo()
	if info == nil || info.Config.MaxDeliver <= 0 {
		return false
	}
	return numDelivered >= uint64(info.Config.MaxDeliver)
}

// nakDelay is the redelivery delay after the numDelivered-th delivery
// failed: steps[numDelivered-1], the last step once the list is exhausted.
func nakDelay(steps []time.Duration, numDelivered uint64) time.Duration {
	if len(steps) == 0 {
		return 0
	}
	if numDelivered == 0 {
		numDelivered = 1
	}
	i := numDelivered - 1
	if i >= uint64(len(steps)) {
		i = uint64(len(steps) - 1)
	}
	return steps[i]
}

// finish settles a message after the writes: ack when all its writes are
// durable, otherwise Nak or dead-letter according to the failure.
func (a *Consumer) finish(ctx context.Context, it *authItem, stats *batchStats) {
	switch {
	case it.requeue:
		it.resolve()
		it.sentBack = true
		if err := it.msg.Nak(); err != nil {
			stats.nakFailures++
		}
		a.metrics.events.WithLabelValues(it.op, outcomeRetried).Inc()
	case it.failure == customdata.Permanent:
		a.deadLetter(ctx, it, events.DeadLetterWriteError, it.failErr, stats)
	case it.failErr != nil:
		a.retryOrDeadLetter(ctx, it, stats)
	default:
		// Acked with the others of its pass by ackApplied, which marks it
		// resolved: until then the heartbeat keeps extending it.
		stats.acks = append(stats.acks, it)
		a.holds.settled(it.userID, it.streamSeq())
		outcome := outcomeApplied
		if it.writes == 0 {
			outcome = outcomeNoWrites
		}
		a.metrics.events.WithLabelValues(it.op, outcome).Inc()
	}
}

// retryOrDeadLetter Naks a failed message with the backoff delay of its
// delivery count, or dead-letters it on its final delivery. Messages are
// settled in stream order, and a message is never Nak'd with a shorter
// delay than an earlier Nak'd message of the same user in the batch: a
// message held back behind a failed one becomes due no earlier than it.
//
// A message that failed only because it is held back behind an event of
// its user still out for redelivery is not dead-lettered at MaxDeliver:
// its blocker used up those deliveries. It is sent back again, behind its
// blocker, for as long as the server delivers it (the consumer's own
// max_deliver, unlimited when the worker provisions it); only on the
// server's last delivery is it dead-lettered, as held_back_by_earlier_event.
func (a *Consumer) retryOrDeadLetter(ctx context.Context, it *authItem, stats *batchStats) {
	if it.numDelivered() >= uint64(a.cfg.MaxDeliver) {
		switch {
		case !it.heldBackOnly():
			a.deadLetter(ctx, it, events.DeadLetterMaxDeliver, it.failErr, stats)
			return
		case a.lastServerDelivery(it.numDelivered()):
			a.deadLetter(ctx, it, events.DeadLetterHeldBack, it.failErr, stats)
			return
		}
	}
	it.resolve()
	delay := a.sendBack(it, nakDelay(a.cfg.BackOff, it.numDelivered()), stats)
	a.metrics.events.WithLabelValues(it.op, outcomeRetried).Inc()
	a.log.Debug().Str("event_id", it.eventID).Uint64("stream_seq", it.streamSeq()).
		Uint64("delivery", it.numDelivered()).Dur("delay", delay).Str("error", errText(it.failErr)).
		Msg("auth event failed; redelivery scheduled")
}

// deadLetter publishes a copy of the message to the dead-letter stream,
// waits for the ack, then terminates the message. If the publish fails
// the message is Nak'd: it is dead-lettered again on redelivery.
func (a *Consumer) deadLetter(ctx context.Context, it *authItem, reason string, cause error, stats *batchStats) {
	dl := a.dlq.deadLetterMsg(it.msg, it.meta, reason, cause)
	err := errNATSDisconnected
	if a.js.Conn().IsConnected() {
		// Disconnected, a publish would only wait out its timeout.
		pubCtx, cancel := context.WithTimeout(ctx, defaultAuthOperationTimeout)
		err = a.dlq.publish(pubCtx, dl)
		cancel()
	}
	// Resolved only now: the heartbeat extends the message while its dead
	// letter is published, so a slow dead-letter stream cannot let it
	// expire and reach another replica.
	it.resolve()
	if err != nil {
		stats.dlqFailures++
		stats.lastDLQErr = err
		// It comes back and may then be applied: the later events of its
		// user stay behind it.
		a.sendBack(it, nakDelay(a.cfg.BackOff, it.numDelivered()), stats)
		a.metrics.events.WithLabelValues(it.op, outcomeRetried).Inc()
		return
	}
	if confirmed, err := a.terminate(ctx, it); !confirmed {
		// The message may come back after AckWait (its dead letter is
		// then de-duplicated by Nats-Msg-Id): the later events of its
		// user stay behind it.
		it.sentBack = true
		if err != nil {
			stats.nakFailures++
		}
	}
	a.holds.settled(it.userID, it.streamSeq())
	reasonLabel := dl.Header.Get(events.HeaderDLQReason)
	a.metrics.events.WithLabelValues(it.op, outcomeDeadLettered).Inc()
	a.metrics.deadLetters.WithLabelValues(reasonLabel).Inc()
	if stats.deadLettered == nil {
		stats.deadLettered = map[string]int{}
	}
	stats.deadLettered[reasonLabel]++
	if len(stats.deadLetteredSeqs) < maxLoggedSeqs {
		stats.deadLetteredSeqs = append(stats.deadLetteredSeqs, it.streamSeq())
	}
	a.log.Debug().Str("event_id", it.eventID).Uint64("stream_seq", it.streamSeq()).
		Uint64("delivery", it.numDelivered()).Str("reason", reasonLabel).
		Str("error", errText(cause)).Msg("auth event dead-lettered")
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return truncateUTF8(err.Error(), maxDeadLetterErrorLength)
}
