package outage

import (
	"sync"
	"time"
)

// Tracker remembers since when one dependency (or one side of a loop)
// fails, so that /readyz can report it past a grace period and each
// transition is logged once. The zero value is "nothing known yet"; it is
// safe for concurrent use.
type Tracker struct {
	mu    sync.Mutex
	known bool
	since time.Time // zero while it works
	err   error
}

// Failed records a failure at now; it reports whether this began an
// outage (the first failure since it last worked).
func (t *Tracker) Failed(now time.Time, err error) (began bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.err = err
	if !t.since.IsZero() {
		return false
	}
	t.known, t.since = true, now
	return true
}

// Succeeded records a success at now; it reports a transition (the first
// success, or a recovery) and how long the outage lasted (0 if none).
func (t *Tracker) Succeeded(now time.Time) (downFor time.Duration, transition bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	transition = !t.known || !t.since.IsZero()
	if !t.since.IsZero() {
		downFor = now.Sub(t.since)
	}
	t.known, t.since, t.err = true, time.Time{}, nil
	return downFor, transition
}

// Down reports, while failing, for how long at now and the last error.
func (t *Tracker) Down(now time.Time) (downFor time.Duration, err error, down bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.since.IsZero() {
		return 0, nil, false
	}
	return now.Sub(t.since), t.err, true
}

// Known reports whether any outcome has been recorded since the last Reset.
func (t *Tracker) Known() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.known
}

// Reset forgets everything.
func (t *Tracker) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.known, t.since, t.err = false, time.Time{}, nil
}
