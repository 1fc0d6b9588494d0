package chaos

import (
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"testing"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
)

// TestExpectedLogins: a wipe relaxes only the LOGINs it may have taken
// unconsumed (acknowledged by the wiped store above the highest ack floor
// read there, or straddling it); the rest stay strict.
func TestExpectedLogins(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	// Epoch 0 was wiped after an ack floor of 10 was read; 1 is final.
	clock := newFaultClock()
	clock.observe(0, 0, 10, t0)
	clock.natsDown(true)
	type ack struct {
		at  int
		pos ackPos
	}
	for _, tc := range []struct {
		name    string
		acks    []ack
		newest  time.Time
		maybe   []time.Time
		allowed []time.Time
		refused []time.Time
	}{
		{"no wipe involved: the newest, only", []ack{{1, ackPos{1, 1}}, {3, ackPos{1, 2}}, {2, ackPos{1, 3}}},
			at(3), nil, []time.Time{at(3)}, []time.Time{at(1), at(2), {}}},
		{"consumed before the wipe: still certain", []ack{{5, ackPos{0, 9}}, {1, ackPos{1, 1}}},
			at(5), nil, []time.Time{at(5)}, []time.Time{at(1), {}}},
		{"not consumed before the wipe: either", []ack{{5, ackPos{0, 11}}, {1, ackPos{1, 1}}},
			at(1), []time.Time{at(5)}, []time.Time{at(1), at(5)}, []time.Time{{}, at(2)}},
		{"an uncertain LOGIN older than the newest certain one changes nothing", []ack{{1, ackPos{0, 11}}, {5, ackPos{1, 1}}},
			at(5), nil, []time.Time{at(5)}, []time.Time{at(1)}},
		{"straddling the wipe: either", []ack{{4, ackPos{straddled, 1}}},
			time.Time{}, []time.Time{at(4)}, []time.Time{{}, at(4)}, []time.Time{at(3)}},
		{"acknowledged twice, once for sure", []ack{{4, ackPos{0, 20}}, {4, ackPos{1, 2}}},
			at(4), nil, []time.Time{at(4)}, []time.Time{{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			led := newLedger()
			for _, a := range tc.acks {
				led.login("u", at(a.at), a.pos)
			}
			want, _ := led.expectedLogins(clock, 1)
			e := want["u"]
			if !e.newest.Equal(tc.newest) || len(e.maybe) != len(tc.maybe) {
				t.Fatalf("newest %s, maybe %v; want %s, %v", e.newest, e.maybe, tc.newest, tc.maybe)
			}
			for _, m := range tc.maybe {
				if !e.maybe[m] {
					t.Fatalf("maybe %v lacks %s", e.maybe, m)
				}
			}
			for _, g := range tc.allowed {
				if !e.allows(g) {
					t.Errorf("lastLogin %s refused", g)
				}
			}
			for _, g := range tc.refused {
				if e.allows(g) {
					t.Errorf("lastLogin %s allowed", g)
				}
			}
		})
	}
}

// TestHostileReasons: each hostile kind, built and signed as runHostile
// does, is refused with the reason the dead-letter check expects, checked
// in the worker's order (authsync admit): the signature against the run's
// TRUSTED_SIGNERS, then the decoder, then the subject. The forged kinds
// are valid DELETEs but for their signature, so only that check stops them.
func TestHostileReasons(t *testing.T) {
	keys, err := newEventKeys(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	trusted, err := events.ParseTrustedSigners(keys.trustedSigners())
	if err != nil {
		t.Fatal(err)
	}
	v, err := events.NewVerifier(trusted)
	if err != nil {
		t.Fatal(err)
	}
	prefix := events.DefaultAuthPrefix
	for _, h := range hostileKinds {
		t.Run(h.kind, func(t *testing.T) {
			msg := nats.NewMsg(h.subject(prefix))
			msg.Data = h.body("user-0001")
			msg.Header.Set(jetstream.MsgIDHeader, "hostile-x")
			if err := h.seal(keys, msg); err != nil {
				t.Fatal(err)
			}
			verr := v.Verify(prefix, msg.Subject, msg.Header, msg.Data)
			_, derr := events.Decoder{}.Decode(msg.Data)
			var got events.Reason
			switch op, _ := events.OperationForSubject(prefix, msg.Subject); {
			case verr != nil:
				got = events.ReasonOf(verr)
				if derr != nil || op != events.OperationDelete {
					t.Errorf("a forged event that is not a valid DELETE (%v, on %s): the signature check would not be the only one stopping it", derr, msg.Subject)
				}
			case derr != nil:
				got = events.ReasonOf(derr)
			case op != events.OperationDelete:
				got = events.ReasonSubjectMismatch
			}
			if got != h.reason {
				t.Fatalf("reason %q (verify: %v; decode: %v), want %q", got, verr, derr, h.reason)
			}
		})
	}
}
