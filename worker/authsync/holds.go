package authsync

import (
	"sync"
	"time"
)

// userHolds remembers, per user, the events of that user this worker sent
// back for redelivery and that have not been settled since. A later event of
// the user arriving in another batch (a new event, or one held back whose
// redelivery is fetched before its blocker's) is held back behind them too,
// so it cannot overtake them: a CREATE published right after a DELETE that
// failed waits for that DELETE.
//
// The memory is per worker process. Every event of a user that the worker
// sends back is remembered until it is settled here (acked or
// dead-lettered), or until staleAfter past its due time: a redelivery
// fetched by another replica is never seen settled here. Across replicas
// the order of redelivered events is therefore not guaranteed.
type userHolds struct {
	mu         sync.Mutex
	byUser     map[string]map[uint64]time.Time // user → stream seq → due
	entries    int
	maxEntries int
	staleAfter time.Duration
}

func newUserHolds(maxEntries int, staleAfter time.Duration) *userHolds {
	return &userHolds{byUser: map[string]map[uint64]time.Time{}, maxEntries: maxEntries, staleAfter: staleAfter}
}

// sentBack records that seq of user was Nak'd and is due at due.
func (h *userHolds) sentBack(user string, seq uint64, due time.Time, now time.Time) {
	if h == nil || user == "" || seq == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.entries >= h.maxEntries {
		h.pruneLocked(now)
	}
	if h.entries >= h.maxEntries {
		// Bounded: more events sent back than MaxAckPending allows in
		// flight means the memory is stale; forget it rather than grow.
		h.byUser, h.entries = map[string]map[uint64]time.Time{}, 0
	}
	seqs := h.byUser[user]
	if seqs == nil {
		seqs = map[uint64]time.Time{}
		h.byUser[user] = seqs
	}
	if _, ok := seqs[seq]; !ok {
		h.entries++
	}
	seqs[seq] = due
}

// settled forgets seq of user (acked or dead-lettered).
func (h *userHolds) settled(user string, seq uint64) {
	if h == nil || user == "" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	seqs := h.byUser[user]
	if _, ok := seqs[seq]; ok {
		delete(seqs, seq)
		h.entries--
		if len(seqs) == 0 {
			delete(h.byUser, user)
		}
	}
}

// blocker reports whether an event of user earlier than seq, and not in
// the current batch, is still out for redelivery; wait is how long until
// the latest of them is due (0 when all are already due).
func (h *userHolds) blocker(user string, seq uint64, inBatch func(uint64) bool, now time.Time) (wait time.Duration, blocked bool) {
	if h == nil || user == "" {
		return 0, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s, due := range h.byUser[user] {
		if s >= seq || inBatch(s) || now.Sub(due) > h.staleAfter {
			continue
		}
		blocked = true
		wait = max(wait, due.Sub(now))
	}
	return wait, blocked
}

func (h *userHolds) pruneLocked(now time.Time) {
	for user, seqs := range h.byUser {
		for s, due := range seqs {
			if now.Sub(due) > h.staleAfter {
				delete(seqs, s)
				h.entries--
			}
		}
		if len(seqs) == 0 {
			delete(h.byUser, user)
		}
	}
}
