package events

// Dead-letter reasons beyond the decoder's Reason values. They
// travel in the Dlq-Reason header and the last subject token.
const (
	DeadLetterMaxDeliver   = "max_deliver_exceeded"
	DeadLetterTriggerError = "permanent_trigger_error"
	DeadLetterWriteError   = "permanent_write_error"
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
)
