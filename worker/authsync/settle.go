package authsync

import (
	"context"
	"time"
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
