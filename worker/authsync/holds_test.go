package authsync

import (
	"testing"
	"time"
)

func TestUserHoldsBlockOnlyLaterEventsOfTheUser(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	none := func(uint64) bool { return false }
	tests := []struct {
		name     string
		setup    func(h *userHolds)
		user     string
		seq      uint64
		inBatch  func(uint64) bool
		at       time.Time
		wantHeld bool
		wantWait time.Duration
	}{
		{"nothing sent back", func(*userHolds) {}, "u", 5, none, now, false, 0},
		{"later event waits until the earlier one is due",
			func(h *userHolds) { h.sentBack("u", 3, now.Add(15*time.Second), now) }, "u", 5, none, now, true, 15 * time.Second},
		{"the longest wait of several",
			func(h *userHolds) {
				h.sentBack("u", 2, now.Add(time.Second), now)
				h.sentBack("u", 3, now.Add(5*time.Second), now)
			}, "u", 5, none, now, true, 5 * time.Second},
		{"an earlier event never waits for a later one",
			func(h *userHolds) { h.sentBack("u", 7, now.Add(15*time.Second), now) }, "u", 5, none, now, false, 0},
		{"another user is not held",
			func(h *userHolds) { h.sentBack("v", 3, now.Add(15*time.Second), now) }, "u", 5, none, now, false, 0},
		{"a blocker in the same batch is ordered by the batch",
			func(h *userHolds) { h.sentBack("u", 3, now.Add(15*time.Second), now) }, "u", 5,
			func(s uint64) bool { return s == 3 }, now, false, 0},
		{"settled blockers release",
			func(h *userHolds) {
				h.sentBack("u", 3, now.Add(15*time.Second), now)
				h.settled("u", 3)
			}, "u", 5, none, now, false, 0},
		{"a due blocker not yet seen still holds, without extra wait",
			func(h *userHolds) { h.sentBack("u", 3, now, now) }, "u", 5, none, now.Add(time.Second), true, 0},
		{"a blocker redelivered elsewhere goes stale",
			func(h *userHolds) { h.sentBack("u", 3, now, now) }, "u", 5, none, now.Add(11 * time.Second), false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newUserHolds(100, 10*time.Second)
			tt.setup(h)
			wait, held := h.blocker(tt.user, tt.seq, tt.inBatch, tt.at)
			if held != tt.wantHeld || wait != tt.wantWait {
				t.Fatalf("blocker = %s, %v; want %s, %v", wait, held, tt.wantWait, tt.wantHeld)
			}
		})
	}
}

func TestUserHoldsStayBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := newUserHolds(10, time.Second)
	for i := range 1000 {
		h.sentBack("u", uint64(i+1), now.Add(time.Minute), now)
		if h.entries > 10 {
			t.Fatalf("%d entries after %d events, want at most 10", h.entries, i+1)
		}
	}
	var nilHolds *userHolds
	nilHolds.sentBack("u", 1, now, now)
	if _, held := nilHolds.blocker("u", 2, func(uint64) bool { return false }, now); held {
		t.Fatal("a nil memory holds events")
	}
}
