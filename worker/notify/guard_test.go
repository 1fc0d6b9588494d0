package notify

import (
	"fmt"
	"testing"
	"time"
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
