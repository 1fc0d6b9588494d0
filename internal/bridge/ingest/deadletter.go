package ingest

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
)

// maxDeadLetterErrorLength bounds Dlq-Error, as the worker does.
const maxDeadLetterErrorLength = 2048

// deadLetter publishes the body of it on <prefix>.<reason> of the
// dead-letter stream and waits for the stream's ack. Its Nats-Msg-Id
// derives from the source, the delivery id and the body, so a delivery
// the sender retries is stored once.
func (s *Server) deadLetter(ctx context.Context, source string, it item) error {
	reason := string(it.reason)
	if !subjectToken(reason) {
		reason = "unknown"
	}
	h := nats.Header{}
	h.Set(events.HeaderDLQReason, reason)
	h.Set(events.HeaderDLQError, truncateUTF8(it.errorText(source), maxDeadLetterErrorLength))
	h.Set(events.HeaderDLQSource, source)
	if it.deliveryID != "" {
		h.Set(events.HeaderDLQOriginalMsgID, it.deliveryID)
	}
	h.Set(jetstream.MsgIDHeader, deadLetterID(source, it.deliveryID, it.body))
	data := events.FitDeadLetter(h, it.body, s.js.Conn().MaxPayload(), s.cfg.DeadLetterStream)
	msg := &nats.Msg{Subject: s.cfg.DeadLetterPrefix + "." + reason, Header: h, Data: data}
	if _, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(s.cfg.DeadLetterStream)); err != nil {
		return fmt.Errorf("publish dead letter to %s: %w", s.cfg.DeadLetterStream, err)
	}
	return nil
}

// errorText is the dead letter's Dlq-Error, read as the worker's are
// ("invalid auth event: <reason>: <detail>"): "<source> webhook" and, in
// a batch, ", <line or element>", then ": <reason>: <detail>", or, for an
// event the worker's rules refuse, ": " and that rejection's own text.
func (it item) errorText(source string) string {
	from := source + " webhook"
	if it.where != "" {
		from += ", " + it.where
	}
	if it.refused {
		return from + ": " + it.detail
	}
	return from + ": " + string(it.reason) + ": " + it.detail
}

// deadLetterID is "dlq-<source>-<digest of delivery id and body>".
func deadLetterID(source, deliveryID string, body []byte) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(deliveryID))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write(body)
	return "dlq-" + source + "-" + strconv.FormatUint(h.Sum64(), 16)
}
