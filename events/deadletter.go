package events

import (
	"hash/fnv"
	"strconv"
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
