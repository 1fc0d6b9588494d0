package authsync

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
)

const (
	deadLetterUnknownReason  = "unknown"
	maxDeadLetterErrorLength = 2048 // room for every problem of a rejected event (events.MaxProblems)
)

// deadLetterer publishes copies of failed messages to the dead-letter stream.
type deadLetterer struct {
	js     jetstream.JetStream
	stream string
	prefix string
	// maxPayload is the server's limit on headers plus body (the
	// connection's MaxPayload; nil: none known).
	maxPayload func() int64
}

func newDeadLetterer(js jetstream.JetStream, stream, prefix string) *deadLetterer {
	d := &deadLetterer{js: js, stream: stream, prefix: prefix}
	if js != nil {
		d.maxPayload = func() int64 { return js.Conn().MaxPayload() }
	}
	return d
}

func (d *deadLetterer) payloadLimit() int64 {
	if d.maxPayload == nil {
		return 0
	}
	return d.maxPayload()
}

// deadLetterMsg builds the dead letter for msg. cause must not carry
// document content: callers pass decoder rejections (names and limits
// only), trigger errors, or write errors reduced to their codes.
func (d *deadLetterer) deadLetterMsg(msg jetstream.Msg, meta *jetstream.MsgMetadata, reason string, cause error) *nats.Msg {
	if reason == "" || !isSubjectToken(reason) {
		reason = deadLetterUnknownReason
	}
	h := nats.Header{}
	h.Set(events.HeaderDLQReason, reason)
	if cause != nil {
		h.Set(events.HeaderDLQError, truncateUTF8(cause.Error(), maxDeadLetterErrorLength))
	}
	h.Set(events.HeaderDLQOriginalSubject, msg.Subject())
	// A redriven event names its first publish's id and how often it was
	// redriven; its dead letter keeps both.
	if id := msg.Headers().Get(events.HeaderDLQOriginalMsgID); id != "" {
		h.Set(events.HeaderDLQOriginalMsgID, id)
	} else if id := msg.Headers().Get(jetstream.MsgIDHeader); id != "" {
		h.Set(events.HeaderDLQOriginalMsgID, id)
	}
	if n := msg.Headers().Get(events.HeaderDLQRedriveCount); n != "" {
		h.Set(events.HeaderDLQRedriveCount, n)
	}
	// Kept as they came, so that a redriven signed event verifies again
	// (the signature covers only the subject and the body).
	for _, k := range []string{events.HeaderSignature, events.HeaderSigner} {
		if v := msg.Headers().Get(k); v != "" {
			h.Set(k, v)
		}
	}
	if meta != nil {
		h.Set(events.HeaderDLQOriginalStream, meta.Stream)
		h.Set(events.HeaderDLQDeliveryCount, strconv.FormatUint(meta.NumDelivered, 10))
		h.Set(events.HeaderDLQStreamSequence, strconv.FormatUint(meta.Sequence.Stream, 10))
		h.Set(jetstream.MsgIDHeader, events.DeadLetterMsgID(meta.Stream, meta.Sequence.Stream, msg.Data()))
	}
	return &nats.Msg{Subject: d.prefix + "." + reason, Header: h, Data: d.fit(h, msg.Data())}
}

// fit returns data, cut if it would not fit beside the headers in one
// message (events.FitDeadLetter).
func (d *deadLetterer) fit(h nats.Header, data []byte) []byte {
	return events.FitDeadLetter(h, data, d.payloadLimit(), d.stream)
}

// publish publishes the dead letter and waits for the stream's ack.
func (d *deadLetterer) publish(ctx context.Context, dl *nats.Msg) error {
	ack, err := d.js.PublishMsg(ctx, dl, jetstream.WithExpectStream(d.stream))
	if err != nil {
		return fmt.Errorf("publish dead letter to %s: %w", d.stream, err)
	}
	if ack == nil {
		return errors.New("publish dead letter: no ack")
	}
	return nil
}

// deadLetterReason is the Dlq-Reason for a decoder rejection.
func deadLetterReason(err error) string {
	if r := events.ReasonOf(err); r != "" {
		return string(r)
	}
	return deadLetterUnknownReason
}

func isSubjectToken(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return s != ""
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
