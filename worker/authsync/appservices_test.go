package authsync

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/triggers"
)

// appServicesAuthEvent is an auth event as App Services documents it and
// as a function forwarding it with JSON.stringify writes it: no
// schemaVersion, no id, custom_data and identity data included.
func appServicesAuthEvent(op events.Operation, user string) []byte {
	return fmt.Appendf(nil, `{"operationType":%q,"providers":["local-userpass"],
	"user":{"id":%q,"type":"normal","data":{"email":"ada@example.com"},
	  "custom_data":{"plan":"from-custom-data","nested":{"role":"admin"}},
	  "identities":[{"id":"i-1","provider_type":"local-userpass","data":{"email":"ada@example.com"}}]},
	"time":%q}`, op, user, authBaseTime().Format("2006-01-02T15:04:05.000Z07:00"))
}

// App Services' own events are applied as they are; an event without an
// id takes the message's Nats-Msg-Id, else "<stream>:<sequence>", which a
// redelivery keeps; custom_data is never written.
func TestAuthAcceptsAppServicesEvents(t *testing.T) {
	var mu sync.Mutex
	ids := map[string][]string{} // by user, one per delivery
	e := newAuthEnv(t, testsupport.MongoDB(t), func(e *authEnv) {
		err := e.set.Register("record-id", triggers.On(events.OperationLogin), triggers.HandlerFunc(func(ev events.AuthEvent) ([]triggers.Write, error) {
			mu.Lock()
			defer mu.Unlock()
			ids[ev.User.ID] = append(ids[ev.User.ID], ev.ID)
			if ev.User.ID == "flaky" && len(ids["flaky"]) == 1 {
				return nil, errors.New("transient: first delivery fails")
			}
			return []triggers.Write{{UserID: ev.User.ID, Upsert: true, Set: map[string]any{"lastEventId": ev.ID}}}, nil
		}))
		if err != nil {
			t.Fatal(err)
		}
	})
	e.start()
	ctx := testsupport.Context(e.t)
	subject := func(op events.Operation) string { return events.AuthSubject(events.DefaultAuthPrefix, op) }

	// CREATE without id or Msg-Id: the built-in trigger creates the
	// document, and nothing of custom_data reaches it.
	if _, err := e.js.Publish(ctx, subject(events.OperationCreate), appServicesAuthEvent(events.OperationCreate, "ada")); err != nil {
		t.Fatal(err)
	}
	e.waitFor("ada's document", func() bool { return e.doc("ada") != nil })
	for k := range e.doc("ada") {
		if k != "_id" && k != "userId" && k != "createdAt" {
			t.Errorf("document has field %q, not written by the CREATE trigger", k)
		}
	}

	// LOGIN with a Msg-Id: that is its id.
	if _, err := e.js.Publish(ctx, subject(events.OperationLogin), appServicesAuthEvent(events.OperationLogin, "ada"),
		jetstream.WithMsgID("as-login-1")); err != nil {
		t.Fatal(err)
	}
	e.waitFor("ada's login applied", func() bool { return e.doc("ada")["lastEventId"] == "as-login-1" })

	// LOGIN without either, failing once: both deliveries carry the id
	// derived from its stream position.
	ack, err := e.js.Publish(ctx, subject(events.OperationLogin), appServicesAuthEvent(events.OperationLogin, "flaky"))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%s:%d", DefaultAuthStream, ack.Sequence)
	e.waitFor("flaky's login applied after a redelivery", func() bool { return e.doc("flaky")["lastEventId"] == want })
	mu.Lock()
	got := append([]string(nil), ids["flaky"]...)
	mu.Unlock()
	if len(got) != 2 || got[0] != want || got[1] != want {
		t.Fatalf("ids seen by the trigger over the deliveries = %v, want [%s %s]", got, want, want)
	}
	// The Publisher fills what a Go producer leaves out the same way.
	bare := e.event(events.OperationLogin, "gus", authBaseTime())
	bare.ID, bare.SchemaVersion = "", 0
	e.publish(bare)
	e.waitFor("gus's login applied", func() bool { return e.doc("gus")["lastEventId"] != nil })
	if id, _ := e.doc("gus")["lastEventId"].(string); !events.ValidEventID(id) {
		t.Fatalf("published without an id, applied under id %q", id)
	}

	e.waitSettled()
	if n := len(e.deadLetters()); n != 0 {
		t.Fatalf("%d App Services events dead-lettered", n)
	}
	for _, u := range []string{"ada", "flaky"} {
		if d := e.doc(u); d["plan"] != nil || d["custom_data"] != nil || d["nested"] != nil {
			t.Fatalf("custom_data written to %s's document: %v", u, d)
		}
	}
}

// A rejected event's dead letter names the most important problem in
// Dlq-Reason and lists every problem in Dlq-Error.
func TestAuthDeadLetterListsEveryProblem(t *testing.T) {
	e := newAuthEnv(t, testsupport.MongoDB(t))
	e.start()
	bad := strings.NewReplacer(`"type":"normal"`, `"type":"normal","Email":"x"`,
		`"local-userpass"]`, `"Local"]`, `"plan"`, `"$set"`).Replace(string(appServicesAuthEvent(events.OperationLogin, "")))
	e.publishRaw(events.AuthSubject(events.DefaultAuthPrefix, events.OperationLogin), []byte(bad))
	e.waitFor("the dead letter", func() bool { return len(e.deadLetters()) == 1 })
	h := e.deadLetters()[0].Header
	if got := h.Get(events.HeaderDLQReason); got != string(events.ReasonForbiddenKey) {
		t.Errorf("Dlq-Reason = %q, want the primary reason forbidden_key", got)
	}
	msg := h.Get(events.HeaderDLQError)
	for _, part := range []string{
		"forbidden_key: user.custom_data: a key starts with '$'",
		`unknown_field: unknown field "user.Email"`,
		"invalid_provider: providers[0]",
		"missing_field: user.id is required",
	} {
		if !strings.Contains(msg, part) {
			t.Errorf("Dlq-Error lacks %q: %s", part, msg)
		}
	}
}
