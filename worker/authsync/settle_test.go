package authsync

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
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

// settleMsg records how a message was settled.
type settleMsg struct {
	fakeMsg
	nakDelay *time.Duration
	termed   *bool
}

func (m settleMsg) Reply() string { return "" }
func (m settleMsg) NakWithDelay(d time.Duration) error {
	*m.nakDelay = d
	return nil
}
func (m settleMsg) Term() error {
	*m.termed = true
	return nil
}

// maxDeliverConsumer is a consumer provisioned by an operator with a
// finite max_deliver.
type maxDeliverConsumer struct {
	jetstream.Consumer
	maxDeliver int
}

func (c maxDeliverConsumer) CachedInfo() *jetstream.ConsumerInfo {
	return &jetstream.ConsumerInfo{Config: jetstream.ConsumerConfig{MaxDeliver: c.maxDeliver}}
}

// TestAuthHeldBackEventIsNotDeadLetteredForItsBlockersDeliveries: an event
// that failed only because it is held back behind an event of its user
// still out for redelivery is sent back again past MAX_DELIVER (its blocker
// used those deliveries), as long as the server delivers it; on the
// server's last delivery it is dead-lettered as held_back_by_earlier_event.
// An event that failed on its own is dead-lettered at MAX_DELIVER.
func TestAuthHeldBackEventIsNotDeadLetteredForItsBlockersDeliveries(t *testing.T) {
	cases := []struct {
		name             string
		failErr          error
		serverMaxDeliver int // 0: as the worker provisions it (unlimited)
		delivered        uint64
		wantReason       string // "" = Nak'd
	}{
		{"held back at MAX_DELIVER", errBlockedByEarlierWrite, 0, 3, ""},
		{"held back well past MAX_DELIVER", errBlockedByEarlierWrite, 0, 9, ""},
		{"held back below the server's max_deliver", errBlockedByEarlierWrite, 5, 4, ""},
		{"held back on the server's last delivery", errBlockedByEarlierWrite, 5, 5, events.DeadLetterHeldBack},
		{"own failure at MAX_DELIVER", errors.New("downstream lookup failed"), 0, 3, events.DeadLetterMaxDeliver},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newAuthEnv(t, testsupport.MongoDB(t), func(e *authEnv) { e.cfg.MaxDeliver = 3 })
			c, _ := e.newConsumer()
			if tc.serverMaxDeliver > 0 {
				c.setConsumer(maxDeliverConsumer{maxDeliver: tc.serverMaxDeliver})
			}
			var nak time.Duration = -1
			var termed bool
			it := &authItem{
				msg:  settleMsg{fakeMsg: fakeMsg{subject: "auth.events.create", data: []byte(`{}`)}, nakDelay: &nak, termed: &termed},
				meta: &jetstream.MsgMetadata{Stream: "AUTH_EVENTS", NumDelivered: tc.delivered, Sequence: jetstream.SequencePair{Stream: 7}},
				op:   "CREATE", userID: "u", failure: customdata.Retry, failErr: tc.failErr,
			}
			ctx, cancel := e.ctx()
			defer cancel()
			c.retryOrDeadLetter(ctx, it, &batchStats{})
			dls := e.deadLetters()
			if tc.wantReason == "" {
				if nak < 0 || termed || len(dls) != 0 {
					t.Fatalf("Nak delay %s, terminated %v, %d dead letters; want sent back, no dead letter", nak, termed, len(dls))
				}
				return
			}
			if len(dls) != 1 || dls[0].Header.Get(events.HeaderDLQReason) != tc.wantReason || !termed {
				t.Fatalf("%d dead letters, terminated %v; want one %s", len(dls), termed, tc.wantReason)
			}
		})
	}
}
