package chaos

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
)

// provider names the workload spreads its events over.
var providers = []string{"local-userpass", "oauth2-google", "api-key", "custom-token"}

// ledger is what the workload published and JetStream acknowledged: the
// expected end state.
type ledger struct {
	mu        sync.Mutex
	lastLogin map[string]time.Time // newest acknowledged LOGIN per user
	hostile   map[string]int       // acknowledged hostile events by kind
	targets   map[string]bool      // users hostile events aimed at

	// After a server lost its store, events acknowledged before may be
	// gone unconsumed: the end state is then checked against every time
	// acknowledged (the value must be one of them) and the newest one
	// acknowledged since the last wipe (the value must be at least that).
	wipes            int
	loginTimes       map[string]map[time.Time]bool
	lastLoginSince   map[string]time.Time
	hostileSinceWipe int

	logins, duplicates atomic.Int64
}

func newLedger() *ledger {
	return &ledger{lastLogin: map[string]time.Time{}, hostile: map[string]int{}, targets: map[string]bool{},
		loginTimes: map[string]map[time.Time]bool{}, lastLoginSince: map[string]time.Time{}}
}

func (l *ledger) login(user string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if at.After(l.lastLogin[user]) {
		l.lastLogin[user] = at
	}
	if at.After(l.lastLoginSince[user]) {
		l.lastLoginSince[user] = at
	}
	if l.loginTimes[user] == nil {
		l.loginTimes[user] = map[time.Time]bool{}
	}
	l.loginTimes[user][at] = true
}

// wiped records that the server restarted with an empty store.
func (l *ledger) wiped() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.wipes++
	clear(l.lastLoginSince)
	l.hostileSinceWipe = 0
}

func (l *ledger) hostileAcked(kind, user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hostile[kind]++
	l.hostileSinceWipe++
	l.targets[user] = true
}

func (l *ledger) hostileTotal() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.hostile {
		n += c
	}
	return n
}

// publishUntilAcked publishes ev (same id, so the same Nats-Msg-Id, on
// every attempt) until JetStream acknowledges it or ctx ends: a producer
// that retries through a NATS outage, as the event contract asks.
func publishUntilAcked(ctx context.Context, pub *events.Publisher, ev events.AuthEvent) error {
	for {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := pub.Publish(actx, ev)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func rawPublishUntilAcked(ctx context.Context, js jetstream.JetStream, msg *nats.Msg) error {
	for {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := js.PublishMsg(actx, msg)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
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
// it, so the ledger must know it. Between LOGINs, one time in eight, it
// publishes the next CREATE or DELETE of one of its lifecycle users that
// is ready for one (lc: see lifecycle).
func runLogins(stop, ctx context.Context, seed uint64, pub *events.Publisher, users []string, led *ledger, lc *lifecycle) {
	rng := rand.New(rand.NewPCG(seed, 1))
	for stop.Err() == nil {
		if rng.IntN(8) == 0 && lc.step(stop, ctx) {
			continue
		}
		user := users[rng.IntN(len(users))]
		ev := loginEvent(rng, user, time.Now())
		ev.ID = events.NewEventID()
		if publishUntilAcked(ctx, pub, ev) != nil {
			return
		}
		led.logins.Add(1)
		led.login(user, ev.Time)
		switch rng.IntN(10) {
		case 0:
			if publishUntilAcked(ctx, pub, ev) == nil {
				led.duplicates.Add(1)
			}
		case 1:
			again := ev
			again.ID = events.NewEventID()
			if publishUntilAcked(ctx, pub, again) == nil {
				led.logins.Add(1)
				led.duplicates.Add(1)
			}
		}
		time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
	}
}

// hostileKinds are events the worker must refuse, each a DELETE aimed at a
// real user (so an effect would show): what a buggy or malicious producer
// sends. Each maps to the dead-letter reason the worker gives it.
var hostileKinds = []struct {
	kind    string
	subject func(prefix string) string
	body    func(user string) []byte
}{
	{"malformed_json", func(p string) string { return events.AuthSubject(p, events.OperationDelete) },
		func(user string) []byte { return []byte(`{"operationType":"DELETE","user":{"id":"` + user + `"`) }},
	{"subject_mismatch", func(p string) string { return events.AuthSubject(p, events.OperationLogin) },
		func(user string) []byte { return hostileJSON(user, nil) }},
	{"unknown_field", func(p string) string { return events.AuthSubject(p, events.OperationDelete) },
		func(user string) []byte { return hostileJSON(user, map[string]any{"$where": "1"}) }},
	{"invalid_provider", func(p string) string { return events.AuthSubject(p, events.OperationDelete) },
		func(user string) []byte { return hostileJSON(user, map[string]any{"providers": []string{""}}) }},
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
// under way then is still retried until acknowledged, under ctx).
func runHostile(stop, ctx context.Context, seed uint64, js jetstream.JetStream, prefix string, targets []string, led *ledger, interval time.Duration) {
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
		if rawPublishUntilAcked(ctx, js, msg) == nil {
			led.hostileAcked(h.kind, user)
		}
	}
}
