package worker

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

// Dead-letter reasons beyond the decoder's events.Reason values. They
// travel in the Dlq-Reason header and the last subject token.
const (
	DeadLetterMaxDeliver     = "max_deliver_exceeded"
	DeadLetterTriggerError   = "permanent_trigger_error"
	DeadLetterWriteError     = "permanent_write_error"
	deadLetterUnknownReason  = "unknown"
	maxDeadLetterErrorLength = 512
)

// Dead-letter headers.
const (
	HeaderDLQReason          = "Dlq-Reason"
	HeaderDLQError           = "Dlq-Error"
	HeaderDLQOriginalSubject = "Dlq-Original-Subject"
	HeaderDLQDeliveryCount   = "Dlq-Delivery-Count"
	HeaderDLQStreamSequence  = "Dlq-Stream-Sequence"
	HeaderDLQOriginalStream  = "Dlq-Original-Stream"
	HeaderDLQOriginalMsgID   = "Dlq-Original-Msg-Id"
)

// deadLetterer publishes copies of failed messages to the dead-letter stream.
type deadLetterer struct {
	js     jetstream.JetStream
	stream string
	prefix string
}

// deadLetterMsgID is the Nats-Msg-Id of a dead letter: a repeat (after a
// lost Term) is de-duplicated by the dead-letter stream.
func deadLetterMsgID(stream string, seq uint64) string {
	return "dlq-" + stream + "-" + strconv.FormatUint(seq, 10)
}

// deadLetterMsg builds the dead letter for msg. cause must not carry
// document content: callers pass decoder rejections (names and limits
// only), trigger errors, or write errors reduced to their codes.
func (d *deadLetterer) deadLetterMsg(msg jetstream.Msg, meta *jetstream.MsgMetadata, reason string, cause error) *nats.Msg {
	if reason == "" || !isSubjectToken(reason) {
		reason = deadLetterUnknownReason
	}
	h := nats.Header{}
	h.Set(HeaderDLQReason, reason)
	if cause != nil {
		h.Set(HeaderDLQError, truncateUTF8(cause.Error(), maxDeadLetterErrorLength))
	}
	h.Set(HeaderDLQOriginalSubject, msg.Subject())
	if id := msg.Headers().Get(jetstream.MsgIDHeader); id != "" {
		h.Set(HeaderDLQOriginalMsgID, id)
	}
	if meta != nil {
		h.Set(HeaderDLQOriginalStream, meta.Stream)
		h.Set(HeaderDLQDeliveryCount, strconv.FormatUint(meta.NumDelivered, 10))
		h.Set(HeaderDLQStreamSequence, strconv.FormatUint(meta.Sequence.Stream, 10))
		h.Set(jetstream.MsgIDHeader, deadLetterMsgID(meta.Stream, meta.Sequence.Stream))
	}
	return &nats.Msg{Subject: d.prefix + "." + reason, Header: h, Data: msg.Data()}
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
