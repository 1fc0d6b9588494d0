package events

import (
	"hash/fnv"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Dead-letter reasons beyond the decoder's Reason values. They
// travel in the Dlq-Reason header and the last subject token.
const (
	DeadLetterMaxDeliver   = "max_deliver_exceeded"
	DeadLetterTriggerError = "permanent_trigger_error"
	DeadLetterWriteError   = "permanent_write_error"
	// DeadLetterHeldBack: the event was held back behind an earlier event
	// of its user that was still being retried when the server's
	// max_deliver of the consumer ran out (only a consumer provisioned
	// with a finite max_deliver has such a limit). Nothing of it was
	// applied; replay it once that earlier event is settled.
	DeadLetterHeldBack = "held_back_by_earlier_event"
	// DeadLetterTooManyUnmappable: customdata-bridge got a webhook batch
	// with more elements it cannot map than it dead-letters one by one
	// (100); this dead letter holds the rest, one per line, and its
	// Dlq-Error counts them by reason.
	DeadLetterTooManyUnmappable = "too_many_unmappable"
)

// Dead-letter headers: a dead letter is the original event (body cut to
// fit when needed) with these headers, published on
// <dead-letter prefix>.<reason>.
const (
	HeaderDLQReason          = "Dlq-Reason"
	HeaderDLQError           = "Dlq-Error"
	HeaderDLQOriginalSubject = "Dlq-Original-Subject"
	HeaderDLQDeliveryCount   = "Dlq-Delivery-Count"
	HeaderDLQStreamSequence  = "Dlq-Stream-Sequence"
	HeaderDLQOriginalStream  = "Dlq-Original-Stream"
	HeaderDLQOriginalMsgID   = "Dlq-Original-Msg-Id"
	// HeaderDLQTruncated is set, to the original body size in bytes, when
	// the body had to be cut to fit the server's max payload beside the
	// dead-letter headers.
	HeaderDLQTruncated = "Dlq-Truncated"
	// HeaderDLQRedriveCount counts how often an operator sent the event
	// back to its original subject (`customdata-worker dlq redrive`). A
	// redriven event carries it, with HeaderDLQOriginalMsgID naming the
	// first publish's Nats-Msg-Id; when it fails again, its new dead
	// letter keeps both, so the next redrive counts on.
	HeaderDLQRedriveCount = "Dlq-Redrive-Count"
	// HeaderDLQSource is set by customdata-bridge on the dead letter of
	// a webhook body it could not map to an auth event: the ingest
	// endpoint it came to (clerk, kratos, auth0). Such a dead letter holds
	// the identity server's body, not an event, and has no
	// Dlq-Original-Subject, so it is never redriven: fix the cause, then
	// have the identity server send it again.
	HeaderDLQSource = "Dlq-Source"
)

// DeadLetterMsgID is the Nats-Msg-Id of the dead letter of the message at
// seq in stream with body: a repeat of the same dead letter (after a lost
// Term) is de-duplicated by the dead-letter stream. The digest of the
// body keeps it unique when a stream is deleted or lost and recreated
// within the duplicate window: its sequences start again at 1, and
// another event at a reused sequence must not be swallowed as a repeat.
func DeadLetterMsgID(stream string, seq uint64, body []byte) string {
	h := fnv.New64a()
	_, _ = h.Write(body)
	return "dlq-" + stream + "-" + strconv.FormatUint(seq, 10) + "-" + strconv.FormatUint(h.Sum64(), 16)
}

// FitDeadLetter returns body, cut when it would not fit beside the
// headers h in one message of at most limit bytes (the server's max
// payload; 0 or less: no limit), and then sets HeaderDLQTruncated in h
// to the original size. Room is kept for the headers still to come:
// Dlq-Truncated itself and, at publish, the expected stream. A message
// published near the max payload would otherwise never fit in the
// dead-letter stream.
func FitDeadLetter(h nats.Header, body []byte, limit int64, stream string) []byte {
	if limit <= 0 {
		return body
	}
	// NATS/1.0 line, "Key: value\r\n" per header, final CRLF.
	headerBytes := int64(len("NATS/1.0\r\n\r\n")) +
		int64(len(HeaderDLQTruncated)+len(": \r\n")+20) +
		int64(len(jetstream.ExpectedStreamHeader)+len(": \r\n")+len(stream))
	for k, vs := range h {
		for _, v := range vs {
			headerBytes += int64(len(k) + len(": \r\n") + len(v))
		}
	}
	room := limit - headerBytes
	if int64(len(body)) <= room {
		return body
	}
	h.Set(HeaderDLQTruncated, strconv.Itoa(len(body)))
	return body[:max(room, 0)]
}
