package dlq

import (
	"context"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
)

// Outcome is what redrive or purge did with one dead letter.
type Outcome struct {
	Entry Entry `json:"entry"`
	// Subject and MsgID are where and as what a redrive republished it.
	Subject string `json:"subject,omitempty"`
	MsgID   string `json:"msgId,omitempty"`
	// Done is false on a dry run and when Err is set.
	Done bool  `json:"done"`
	Err  error `json:"-"`
}

// Redrive republishes every dead letter f selects on its original
// subject, waits for JetStream's ack, then deletes the dead letter. With
// dryRun it only reports what it would do. fn sees each outcome; a dead
// letter that cannot be redriven (truncated, no original subject, publish
// refused) is reported there and left in place. The returned error is
// the listing's, or ErrNoSelection.
func (q *Queue) Redrive(ctx context.Context, f Filter, dryRun bool, fn func(Outcome)) error {
	if !f.selects() {
		return ErrNoSelection
	}
	stream, err := q.js.Stream(ctx, q.stream)
	if err != nil {
		return fmt.Errorf("dead-letter stream %s: %w", q.stream, err)
	}
	return q.Each(ctx, f, func(e Entry) error {
		fn(q.redriveOne(ctx, stream, e, dryRun))
		return nil
	})
}

func (q *Queue) redriveOne(ctx context.Context, stream jetstream.Stream, e Entry, dryRun bool) Outcome {
	o := Outcome{Entry: e, Subject: e.OriginalSubject}
	switch {
	case e.TruncatedFrom > 0:
		o.Err = ErrTruncated
		return o
	case e.OriginalSubject == "" || events.SubjectMatches(q.prefix+".>", e.OriginalSubject):
		o.Err = ErrNoOriginalSubject
		return o
	case e.Reason == string(events.ReasonMsgIDNotSigned):
		o.Err = ErrReplay
		return o
	}
	msg := redriveMsg(q.stream, e)
	o.MsgID = msg.Header.Get(jetstream.MsgIDHeader)
	if dryRun {
		return o
	}
	var opts []jetstream.PublishOpt
	if e.OriginalStream != "" {
		opts = append(opts, jetstream.WithExpectStream(e.OriginalStream))
	}
	// A duplicate ack means an earlier redrive of this very dead letter
	// was stored but its deletion failed: the event is back, delete. Not
	// so for a signed event, which goes back under its own signed id: its
	// duplicate may be the first publish, still inside the duplicate
	// window, so the dead letter stays until a redrive is stored.
	ack, err := q.js.PublishMsg(ctx, msg, opts...)
	if err != nil {
		o.Err = fmt.Errorf("republish on %s: %w", e.OriginalSubject, err)
		return o
	}
	if ack.Duplicate && msg.Header.Get(events.HeaderSignature) != "" {
		o.Err = fmt.Errorf("%w: %s was stored as a duplicate of a message with the same id (a signed event keeps the Nats-Msg-Id its signature fixes); the dead letter is kept: redrive it again once the auth stream's duplicate window has passed", ErrSignedInWindow, o.MsgID)
		return o
	}
	if err := stream.DeleteMsg(ctx, e.Sequence); err != nil {
		o.Err = fmt.Errorf("republished as %s, but deleting dead letter %d failed (redriving it again is de-duplicated): %w", o.MsgID, e.Sequence, err)
		return o
	}
	o.Done = true
	return o
}

// redriveMsg is the event of e as it goes back to its original subject:
// its body, a Nats-Msg-Id the duplicate window has not seen, the first
// publish's id, the redrive count and its signature headers.
func redriveMsg(dlqStream string, e Entry) *nats.Msg {
	n := e.RedriveCount + 1
	root := e.OriginalMsgID
	if root == "" {
		root = events.DeadLetterMsgID(dlqStream, e.Sequence, e.Data)
	}
	h := nats.Header{}
	h.Set(jetstream.MsgIDHeader, root+".redrive-"+strconv.Itoa(n))
	if sig := e.Headers.Get(events.HeaderSignature); sig != "" {
		// The worker takes a signed event under no other id.
		h.Set(jetstream.MsgIDHeader, events.SignedMsgID(sig))
	}
	h.Set(events.HeaderDLQRedriveCount, strconv.Itoa(n))
	// The root travels with the event, so that when it fails again its
	// dead letter names it and the next redrive is root.redrive-(N+1),
	// for an event that never had an id of its own too.
	h.Set(events.HeaderDLQOriginalMsgID, root)
	// A signed event keeps its signature: it covers the original subject
	// and body, which a redrive does not change.
	for _, k := range []string{events.HeaderSignature, events.HeaderSigner} {
		if v := e.Headers.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	return &nats.Msg{Subject: e.OriginalSubject, Header: h, Data: e.Data}
}

// Purge deletes every dead letter f selects (dryRun: only reports them).
func (q *Queue) Purge(ctx context.Context, f Filter, dryRun bool, fn func(Outcome)) error {
	if !f.selects() {
		return ErrNoSelection
	}
	stream, err := q.js.Stream(ctx, q.stream)
	if err != nil {
		return fmt.Errorf("dead-letter stream %s: %w", q.stream, err)
	}
	return q.Each(ctx, f, func(e Entry) error {
		o := Outcome{Entry: e}
		if !dryRun {
			if err := stream.DeleteMsg(ctx, e.Sequence); err != nil {
				o.Err = fmt.Errorf("delete dead letter %d: %w", e.Sequence, err)
			} else {
				o.Done = true
			}
		}
		fn(o)
		return nil
	})
}
