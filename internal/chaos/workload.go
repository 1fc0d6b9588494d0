package chaos

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
)

// provider names the workload spreads its events over.
var providers = []string{"local-userpass", "oauth2-google", "api-key", "custom-token"}

// publishUntilAcked publishes ev (same id, so the same Nats-Msg-Id, on
// every attempt) until JetStream acknowledges it or ctx ends: a producer
// that retries through a NATS outage, as the event contract asks.
func publishUntilAcked(ctx context.Context, pub *events.Publisher, ev events.AuthEvent) error {
	_, err := publishAckedUntil(ctx, pub, ev)
	return err
}

// rawPublishAckedUntil is publishUntilAcked for a message as it is.
func rawPublishAckedUntil(ctx context.Context, js jetstream.JetStream, msg *nats.Msg) (*jetstream.PubAck, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		ack, err := js.PublishMsg(actx, msg)
		cancel()
		if err == nil {
			return ack, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// loginEvent is a LOGIN of user at a time up to an hour in the past
// (millisecond precision, as BSON dates keep it), so events arrive out of
// order and only $max keeps the newest.
func loginEvent(rng *rand.Rand, user string, now time.Time) events.AuthEvent {
	at := now.Add(-time.Duration(rng.Int64N(int64(time.Hour)))).Truncate(time.Millisecond).UTC()
	return events.AuthEvent{
		OperationType: events.OperationLogin,
		Providers:     []string{providers[rng.IntN(len(providers))]},
		User:          events.User{ID: user},
		Time:          at,
	}
}

// runLogins publishes LOGINs of random users until stop ends; a tenth are
// published twice with the same id (the server drops the copy), and as
// many again as a second event with the same content and a new id (the
// worker applies it, harmlessly). A publish under way when stop ends is
// still retried until acknowledged (under ctx): JetStream may have stored
// it, so the ledger must know it, with the epoch of the server that
// acknowledged it (clock). Between LOGINs, one time in eight, it
// publishes the next CREATE or DELETE of one of its lifecycle users that
// is ready for one (lc: see lifecycle).
func runLogins(stop, ctx context.Context, seed uint64, pub *events.Publisher, clock *faultClock, users []string, led *ledger, lc *lifecycle) {
	rng := rand.New(rand.NewPCG(seed, 1))
	publish := func(ev events.AuthEvent) (ackPos, error) {
		_, pos, err := clock.stamped(func() (*jetstream.PubAck, error) { return publishAckedUntil(ctx, pub, ev) })
		return pos, err
	}
	for stop.Err() == nil {
		if rng.IntN(8) == 0 && lc.step(stop, ctx) {
			continue
		}
		user := users[rng.IntN(len(users))]
		ev := loginEvent(rng, user, time.Now())
		ev.ID = events.NewEventID()
		pos, err := publish(ev)
		if err != nil {
			return
		}
		led.logins.Add(1)
		led.login(user, ev.Time, pos)
		switch rng.IntN(10) {
		case 0:
			// Stored once unless a wipe came between: then it is stored
			// again, and this ack is where.
			if pos, err := publish(ev); err == nil {
				led.duplicates.Add(1)
				led.login(user, ev.Time, pos)
			}
		case 1:
			again := ev
			again.ID = events.NewEventID()
			if pos, err := publish(again); err == nil {
				led.logins.Add(1)
				led.duplicates.Add(1)
				led.login(user, ev.Time, pos)
			}
		}
		time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
	}
}

// hostileKinds are events the worker must refuse, each a DELETE aimed at a
// real user (so an effect would show): what a buggy or malicious producer
// sends, with the dead-letter reason the worker must give it. The first
// four are signed by the trusted producer key (so they reach the check
// their reason names); the others are forged: unsigned, altered after
// signing, signed by a key nobody trusts, a signed event replayed under
// another Nats-Msg-Id, a DELETE signed by the reference issuer's
// LOGIN-only key.
var hostileKinds = []struct {
	kind    string
	reason  events.Reason
	subject func(prefix string) string
	body    func(user string) []byte
	seal    func(k *eventKeys, msg *nats.Msg) error // signs msg as the kind has it
}{
	{"malformed_json", events.ReasonMalformedJSON, deleteSubject,
		func(user string) []byte {
			// Its own id: two of a user are two signatures, two Nats-Msg-Ids.
			return []byte(`{"operationType":"DELETE","id":"` + events.NewEventID() + `","user":{"id":"` + user + `"`)
		}, signedBy(producerKey)},
	{"subject_mismatch", events.ReasonSubjectMismatch, func(p string) string { return events.AuthSubject(p, events.OperationLogin) },
		func(user string) []byte { return hostileJSON(user, nil) }, signedBy(producerKey)},
	{"dollar_key", events.ReasonForbiddenKey, deleteSubject,
		func(user string) []byte { return hostileJSON(user, map[string]any{"$where": "1"}) }, signedBy(producerKey)},
	{"invalid_provider", events.ReasonInvalidProvider, deleteSubject,
		func(user string) []byte { return hostileJSON(user, map[string]any{"providers": []string{""}}) }, signedBy(producerKey)},
	{"unsigned", events.ReasonUnsigned, deleteSubject,
		func(user string) []byte { return hostileJSON(user, nil) }, func(*eventKeys, *nats.Msg) error { return nil }},
	{"altered", events.ReasonBadSignature, deleteSubject,
		func(user string) []byte { return hostileJSON(user, nil) },
		func(k *eventKeys, msg *nats.Msg) error {
			if err := k.producer.Sign(msg); err != nil {
				return err
			}
			msg.Data = append(msg.Data, ' ') // the same DELETE, valid JSON, another body
			return nil
		}},
	{"untrusted_signer", events.ReasonUntrustedSigner, deleteSubject,
		func(user string) []byte { return hostileJSON(user, nil) }, signedBy(func(k *eventKeys) *events.Signer { return k.untrusted })},
	{"replayed", events.ReasonMsgIDNotSigned, deleteSubject,
		func(user string) []byte { return hostileJSON(user, nil) },
		func(k *eventKeys, msg *nats.Msg) error {
			if err := k.producer.Sign(msg); err != nil {
				return err
			}
			msg.Header.Set(jetstream.MsgIDHeader, "hostile-"+events.NewEventID())
			return nil
		}},
	{"operation_not_allowed", events.ReasonOperationNotAllowed, deleteSubject,
		func(user string) []byte { return hostileJSON(user, nil) }, signedBy(func(k *eventKeys) *events.Signer { return k.refIssuer })},
}

func deleteSubject(prefix string) string { return events.AuthSubject(prefix, events.OperationDelete) }

func producerKey(k *eventKeys) *events.Signer { return k.producer }

func signedBy(key func(*eventKeys) *events.Signer) func(*eventKeys, *nats.Msg) error {
	return func(k *eventKeys, msg *nats.Msg) error { return key(k).Sign(msg) }
}

func hostileJSON(user string, override map[string]any) []byte {
	m := map[string]any{
		"schemaVersion": 1, "id": events.NewEventID(), "operationType": "DELETE",
		"providers": []string{"local-userpass"}, "user": map[string]any{"id": user},
		"time": time.Now().UTC().Format(time.RFC3339Nano),
	}
	for k, v := range override {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return b
}

// runHostile publishes a hostile event every interval until stop ends (one
// under way then is still retried until acknowledged, under ctx). Each is
// known by the Nats-Msg-Id it is published under: the signature's
// (events.SignedMsgID) when signed, else one of its own.
func runHostile(stop, ctx context.Context, seed uint64, js jetstream.JetStream, keys *eventKeys, clock *faultClock, prefix string, targets []string, led *ledger, interval time.Duration) {
	rng := rand.New(rand.NewPCG(seed, 2))
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop.Done():
			return
		case <-t.C:
		}
		h := hostileKinds[rng.IntN(len(hostileKinds))]
		user := targets[rng.IntN(len(targets))]
		msg := nats.NewMsg(h.subject(prefix))
		msg.Data = h.body(user)
		msg.Header.Set(jetstream.MsgIDHeader, "hostile-"+events.NewEventID())
		if err := h.seal(keys, msg); err != nil {
			continue // a key that cannot sign: no event, nothing to check
		}
		id := msg.Header.Get(jetstream.MsgIDHeader)
		_, pos, err := clock.stamped(func() (*jetstream.PubAck, error) { return rawPublishAckedUntil(ctx, js, msg) })
		if err == nil {
			led.hostileAcked(&hostileEvent{msgID: id, kind: h.kind, reason: string(h.reason), user: user, ack: pos})
		}
	}
}
