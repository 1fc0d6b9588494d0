package authsync

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/dlq"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

type signingKey struct {
	signer *events.Signer
	pub    string
}

func newSigningKey(t *testing.T) signingKey {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	s, err := events.NewSigner(seed)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{signer: s, pub: s.PublicKey()}
}

// signedEvent is ev as its producer would publish it, signed by k.
func (e *authEnv) signedEvent(k signingKey, ev events.AuthEvent) *nats.Msg {
	e.t.Helper()
	data, err := json.Marshal(ev)
	if err != nil {
		e.t.Fatal(err)
	}
	msg := &nats.Msg{Subject: events.AuthSubject(events.DefaultAuthPrefix, ev.OperationType), Data: data,
		Header: nats.Header{nats.MsgIdHdr: []string{ev.ID}}}
	if err := k.signer.Sign(msg); err != nil {
		e.t.Fatal(err)
	}
	return msg
}

func (e *authEnv) publishMsg(msg *nats.Msg) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), authWait)
	defer cancel()
	if _, err := e.js.PublishMsg(ctx, msg); err != nil {
		e.t.Fatalf("publish on %s: %v", msg.Subject, err)
	}
}

// TestSignedEventsAreRequiredWhenSignersAreTrusted: with trusted signers
// configured, only events signed by them, for operations their keys may
// send, take effect; every other is dead-lettered with its own reason and
// changes nothing. A dead letter keeps its signature, so once its key is
// trusted a redrive applies it.
func TestSignedEventsAreRequiredWhenSignersAreTrusted(t *testing.T) {
	auth, loginOnly, stranger := newSigningKey(t), newSigningKey(t), newSigningKey(t)
	trusted := []events.TrustedSigner{{PublicKey: auth.pub}, {PublicKey: loginOnly.pub, Operations: []events.Operation{events.OperationLogin}}}
	e := newAuthEnv(t, testsupport.MongoDB(t), func(e *authEnv) {
		e.cfg.TrustedSigners = trusted
		// A signed event is redriven under its own signed id, which the
		// duplicate window swallows: keep the window short here.
		e.streams.DuplicateWindow = time.Second
	})
	users := []string{"signed", "rotated", "unsigned", "forged", "replayed", "stranger", "not-allowed"}
	for _, u := range users {
		if _, err := e.coll.InsertOne(testsupport.Context(t), bson.D{{Key: "userId", Value: u}}); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := e.newConsumer()
	stop := e.run(c)
	at := authBaseTime()

	signedPub, err := events.NewPublisher(e.js, events.WithSigner(auth.signer))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signedPub.Publish(testsupport.Context(t), e.event(events.OperationLogin, "signed", at)); err != nil {
		t.Fatal(err)
	}
	e.publishMsg(e.signedEvent(loginOnly, e.event(events.OperationLogin, "rotated", at)))
	e.publish(e.event(events.OperationDelete, "unsigned", at)) // e.pub signs nothing
	// A trusted key's signature, on a body and subject someone swapped.
	forged := e.signedEvent(auth, e.event(events.OperationLogin, "someone", at))
	forged.Data, _ = json.Marshal(e.event(events.OperationDelete, "forged", at))
	forged.Subject = events.AuthSubject(events.DefaultAuthPrefix, events.OperationDelete)
	forged.Header.Set(nats.MsgIdHdr, "forged-1")
	e.publishMsg(forged)
	// A well-signed LOGIN replayed on the DELETE subject.
	replayed := e.signedEvent(auth, e.event(events.OperationLogin, "replayed", at))
	replayed.Subject = events.AuthSubject(events.DefaultAuthPrefix, events.OperationDelete)
	replayed.Header.Set(nats.MsgIdHdr, "replayed-1")
	e.publishMsg(replayed)
	e.publishMsg(e.signedEvent(stranger, e.event(events.OperationDelete, "stranger", at)))
	e.publishMsg(e.signedEvent(loginOnly, e.event(events.OperationDelete, "not-allowed", at)))
	e.waitSettled()

	for _, u := range []string{"signed", "rotated"} {
		if e.doc(u)["lastLogin"] == nil {
			t.Errorf("%s: the signed LOGIN did not take effect", u)
		}
	}
	for _, u := range users[2:] {
		if len(e.docs(u)) != 1 {
			t.Errorf("%s: an event that failed verification changed the document", u)
		}
	}
	reasons := map[string]int{}
	for _, m := range e.deadLetters() {
		reasons[m.Header.Get(events.HeaderDLQReason)]++
	}
	wantReasons := map[string]int{
		string(events.ReasonUnsigned): 1, string(events.ReasonBadSignature): 2,
		string(events.ReasonUntrustedSigner): 1, string(events.ReasonOperationNotAllowed): 1,
	}
	for r, n := range wantReasons {
		if reasons[r] != n {
			t.Errorf("dead letters with reason %s: %d, want %d (all: %v)", r, reasons[r], n, reasons)
		}
	}

	// The operator trusts the stranger's key (a new auth service) and
	// redrives its dead letter: its signature still holds.
	stop()
	e.cfg.TrustedSigners = append(trusted, events.TrustedSigner{PublicKey: stranger.pub})
	e.start()
	q, err := dlq.New(e.js, DefaultDeadLetterStream, DefaultDeadLetterPrefix)
	if err != nil {
		t.Fatal(err)
	}
	// Inside the duplicate window the redrive is refused and the dead
	// letter kept; past it, the redrive is stored.
	e.waitFor("the signed dead letter redriven", func() bool {
		var done bool
		if err := q.Redrive(testsupport.Context(t), dlq.Filter{Reason: string(events.ReasonUntrustedSigner)}, false, func(o dlq.Outcome) {
			switch {
			case errors.Is(o.Err, dlq.ErrSignedInWindow):
			case o.Err != nil:
				t.Errorf("redrive: %v", o.Err)
			default:
				done = o.MsgID == events.SignedMsgID(o.Entry.Headers.Get(events.HeaderSignature))
			}
		}); err != nil {
			t.Fatal(err)
		}
		return done
	})
	e.waitFor("the redriven DELETE applies", func() bool { return len(e.docs("stranger")) == 0 })
	// The unsigned one stays unsigned: redriven, it is dead-lettered again.
	if err := q.Redrive(testsupport.Context(t), dlq.Filter{Reason: string(events.ReasonUnsigned)}, false, func(dlq.Outcome) {}); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the redriven unsigned event is dead-lettered again", func() bool {
		for _, m := range e.deadLetters() {
			if m.Header.Get(events.HeaderDLQReason) == string(events.ReasonUnsigned) && m.Header.Get(events.HeaderDLQRedriveCount) == "1" {
				return true
			}
		}
		return false
	})
	if len(e.docs("unsigned")) != 1 {
		t.Fatal("the redriven unsigned DELETE took effect")
	}
}

// An unsigned message sent ahead under a signed event's id cannot make
// JetStream drop the real one as a duplicate: a signed event's
// Nats-Msg-Id is fixed by its signature, which nobody can know before.
func TestUnsignedMessageAheadDoesNotSwallowTheSignedEvent(t *testing.T) {
	auth := newSigningKey(t)
	e := newAuthEnv(t, testsupport.MongoDB(t), func(e *authEnv) {
		e.cfg.TrustedSigners = []events.TrustedSigner{{PublicKey: auth.pub}}
	})
	if _, err := e.coll.InsertOne(testsupport.Context(t), bson.D{{Key: "userId", Value: "ahead"}}); err != nil {
		t.Fatal(err)
	}
	c, _ := e.newConsumer()
	e.run(c)
	ev := e.event(events.OperationLogin, "ahead", authBaseTime())
	e.publish(ev) // unsigned, Nats-Msg-Id = the event id
	signedPub, err := events.NewPublisher(e.js, events.WithSigner(auth.signer))
	if err != nil {
		t.Fatal(err)
	}
	ack, err := signedPub.Publish(testsupport.Context(t), ev)
	if err != nil {
		t.Fatal(err)
	}
	if ack.Duplicate {
		t.Fatal("the signed event was stored as a duplicate of the unsigned one")
	}
	e.waitFor("the signed LOGIN applied", func() bool { return e.doc("ahead")["lastLogin"] != nil })
}
