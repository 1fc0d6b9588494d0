package notify

import (
	"fmt"
	"testing"
	"time"

	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

func TestBoundedSetForgetsTheOldest(t *testing.T) {
	s := newBoundedSet(3)
	for i := range 3 {
		if !s.add(fmt.Sprint(i)) {
			t.Fatalf("add %d: not new", i)
		}
	}
	if s.add("1") {
		t.Fatal("1 added twice")
	}
	if !s.add("3") || s.len() != 3 {
		t.Fatalf("add 3: len %d", s.len())
	}
	// 0 was the oldest and is forgotten; 1 and 2 are remembered.
	if !s.add("0") || s.add("2") {
		t.Fatal("wrong member forgotten")
	}
	for i := range 1000 {
		s.add(fmt.Sprint("x", i))
	}
	if s.len() != 3 {
		t.Fatalf("len %d after many adds, want 3", s.len())
	}
}

func TestNoticeLogLimiter(t *testing.T) {
	l := newLogLimiter(time.Hour)
	if ok, _ := l.allow("a"); !ok {
		t.Fatal("first a held back")
	}
	for range 5 {
		if ok, _ := l.allow("a"); ok {
			t.Fatal("a let through within the interval")
		}
	}
	if ok, _ := l.allow("b"); !ok {
		t.Fatal("b held back by a")
	}
	l.last["a"] = time.Now().Add(-2 * time.Hour)
	if ok, held := l.allow("a"); !ok || held != 5 {
		t.Fatalf("after the interval: ok %v, suppressed %d; want true, 5", ok, held)
	}
}

// TestDuplicateCheckOnlyWhileDuplicatesArePossible: the per-change
// CountDocuments runs only while the unique user-id index is not known to
// be in place.
func TestDuplicateCheckOnlyWhileDuplicatesArePossible(t *testing.T) {
	missing := func() error { return customdata.ErrUserIndexMissing }
	healthy := func() error { return nil }
	for _, tc := range []struct {
		name       string
		allowDup   bool
		index      func() error // nil: not wired
		goneRecent bool
		goneLong   bool
		want       bool
	}{
		{name: "unique index in place", index: healthy, want: false},
		{name: "index missing", index: missing, want: true},
		{name: "not wired: unknown", want: true},
		{name: "duplicates allowed", allowDup: true, index: healthy, want: true},
		{name: "collection just reported gone", index: healthy, goneRecent: true, want: true},
		{name: "collection gone long ago", index: healthy, goneLong: true, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &Notifier{data: customdata.Config{AllowDuplicates: tc.allowDup}, uniqueIndex: tc.index,
				dupGuard: &duplicateUserGuard{queue: make(chan string, 1)}}
			switch {
			case tc.goneRecent:
				n.goneAt.Store(time.Now().UnixNano())
			case tc.goneLong:
				n.goneAt.Store(time.Now().Add(-2 * duplicateCheckAfterGone).UnixNano())
			}
			n.changedUser("ada")
			if got := len(n.dupGuard.queue) == 1; got != tc.want {
				t.Fatalf("check queued: %v, want %v", got, tc.want)
			}
		})
	}
}
