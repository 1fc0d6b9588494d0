package authsync

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestAuthNakDelay(t *testing.T) {
	steps := []time.Duration{time.Second, 5 * time.Second, 30 * time.Second}
	cases := []struct {
		delivered uint64
		steps     []time.Duration
		want      time.Duration
	}{
		{0, steps, time.Second},
		{1, steps, time.Second},
		{2, steps, 5 * time.Second},
		{3, steps, 30 * time.Second},
		{50, steps, 30 * time.Second},
		{1, nil, 0},
	}
	for _, tc := range cases {
		if got := nakDelay(tc.steps, tc.delivered); got != tc.want {
			t.Errorf("nakDelay(%v, %d) = %s, want %s", tc.steps, tc.delivered, got, tc.want)
		}
	}
}

func TestAuthHealthTransitions(t *testing.T) {
	var h authHealth
	now := time.Unix(1_000_000, 0)
	grace := 10 * time.Second
	if err := h.check(now, grace); err == nil {
		t.Fatal("healthy before running")
	}
	h.setRunning(true)
	h.runningSince = now
	if err := h.check(now, grace); err != nil {
		t.Fatalf("just started: %v", err)
	}
	if _, first := h.fetch.Succeeded(now); !first {
		t.Fatal("first fetch success is a transition")
	}
	if _, again := h.fetch.Succeeded(now); again {
		t.Fatal("repeated success is not a transition")
	}
	if !h.mongo.Failed(now, errors.New("down")) || h.mongo.Failed(now.Add(time.Second), errors.New("down")) {
		t.Fatal("only the first failure is a transition")
	}
	if err := h.check(now.Add(5*time.Second), grace); err != nil {
		t.Fatalf("within grace: %v", err)
	}
	err := h.check(now.Add(11*time.Second), grace)
	if err == nil || !strings.Contains(err.Error(), "MongoDB") || strings.Contains(err.Error(), "NATS") {
		t.Fatalf("after grace = %v, want MongoDB named alone", err)
	}
	if down, ok := h.mongo.Succeeded(now.Add(12 * time.Second)); !ok || down != 12*time.Second {
		t.Fatalf("recovery = %s, %v", down, ok)
	}
	h.fetch.Failed(now.Add(12*time.Second), errors.New("no responders"))
	err = h.check(now.Add(30*time.Second), grace)
	if err == nil || !strings.Contains(err.Error(), "NATS") || strings.Contains(err.Error(), "MongoDB") {
		t.Fatalf("fetch down = %v, want NATS named alone", err)
	}
}
