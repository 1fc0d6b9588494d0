package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

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

// overflow gathers the unmappable elements of a request past
// Config.MaxDeadLetters, so that one request makes a bounded number of
// dead letters (Auth0 sends whole batches) and still drops nothing: they
// share one dead letter, or as many as it takes to fit them in NATS's
// max payload (two for a 1 MiB body and the default max payload).
type overflow struct {
	limit int // bytes of one part's body; 0: no limit
	parts []*overflowPart
}

type overflowPart struct {
	n      int
	first  string // where its first element is in the request
	body   bytes.Buffer
	counts []reasonCount
}

type reasonCount struct {
	reason events.Reason
	n      int
}

// headroom is kept free of a part's body in a message, for the dead
// letter's headers (Dlq-Error is at most 2 KiB).
const headroom = 4 << 10

func newOverflow(maxPayload int64) overflow {
	return overflow{limit: int(max(maxPayload-headroom, 0))}
}

// n is the number of elements gathered.
func (o *overflow) n() int {
	n := 0
	for _, p := range o.parts {
		n += p.n
	}
	return n
}

// add keeps the element it, on a line of its own: a JSON element
// compacted (JSON lines), a line of JSON lines that is not JSON as it
// came (a line holds no newline).
func (o *overflow) add(it item) {
	var line bytes.Buffer
	if json.Compact(&line, it.body) != nil {
		line.Reset()
		line.Write(it.body)
	}
	line.WriteByte('\n')
	if len(o.parts) == 0 || o.limit > 0 && o.parts[len(o.parts)-1].body.Len()+line.Len() > o.limit {
		o.parts = append(o.parts, &overflowPart{first: it.where})
	}
	p := o.parts[len(o.parts)-1]
	p.n++
	p.body.Write(line.Bytes())
	for i := range p.counts {
		if p.counts[i].reason == it.reason {
			p.counts[i].n++
			return
		}
	}
	p.counts = append(p.counts, reasonCount{it.reason, 1})
}

// items are the dead letters of the elements gathered (one per part),
// after the first kept dead letters of their own.
func (o *overflow) items(kept int) []item {
	items := make([]item, 0, len(o.parts))
	for i, p := range o.parts {
		var reasons []string
		for _, c := range p.counts {
			reasons = append(reasons, fmt.Sprintf("%s: %d", c.reason, c.n))
		}
		from := ""
		if p.first != "" {
			from = ", from " + p.first + " on"
		}
		part := ""
		if len(o.parts) > 1 {
			part = fmt.Sprintf(" (part %d of %d)", i+1, len(o.parts))
		}
		it := unmappable(events.DeadLetterTooManyUnmappable, p.body.Bytes(), "",
			"%d more elements of the request cannot be mapped past the %d dead-lettered one by one: they are this dead letter's body, one per line%s (%s)%s",
			p.n, kept, from, strings.Join(reasons, ", "), part)
		it.n = p.n
		items = append(items, it)
	}
	return items
}

// deadLetterID is "dlq-<source>-<digest of delivery id and body>".
func deadLetterID(source, deliveryID string, body []byte) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(deliveryID))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write(body)
	return "dlq-" + source + "-" + strconv.FormatUint(h.Sum64(), 16)
}
