package authsync

import (
	"sync"
	"time"
)

// progressInterval is how often a batch's messages get in-progress acks:
// a quarter of what is left of AckWait once the fetch has waited BatchWait
// (the first message was delivered up to BatchWait before the batch
// starts), so three extensions in a row may be lost or late before a
// healthy batch expires. With the defaults (10s, 200ms) it is 2.45s.
func progressInterval(ackWait, batchWait time.Duration) time.Duration {
	return max((ackWait-batchWait)/4, 10*time.Millisecond)
}

func (a *Consumer) progressInterval() time.Duration {
	return progressInterval(a.currentAckWait(), a.cfg.BatchWait)
}

// startHeartbeat extends AckWait of the batch's unresolved messages with
// in-progress acks, so a slow batch (MongoDB down, a slow write concern, a
// write that takes longer than AckWait) is not redelivered behind the
// worker's back. It runs on its own goroutine, independent of the writes.
// The returned stop waits for the goroutine to end.
func (a *Consumer) startHeartbeat(items []*authItem) (stop func()) {
	interval := a.progressInterval()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, it := range items {
					// Under the item's lock: a resolution waits for an
					// in-progress ack under way, so its Nak goes out after.
					it.progress.Lock()
					if !it.resolved.Load() {
						// Best effort: if NATS is down the message is
						// redelivered later and re-applied idempotently.
						_ = it.msg.InProgress()
					}
					it.progress.Unlock()
				}
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}
