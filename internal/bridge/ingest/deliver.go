package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/customdata-worker/customdata-worker/events"
)

// item is one thing a request asks for: an event to publish, a body to
// dead-letter because it cannot be mapped, or nothing (a kind the source
// maps to no event).
type item struct {
	// ev is the event, when the body mapped to one.
	ev     events.AuthEvent
	mapped bool
	// ignored: a kind of notification that is no auth event (Auth0's
	// other log types); counted, answered like a success.
	ignored bool
	// reason and detail say why the body cannot be mapped (detail names
	// fields and limits, never values). refused: it mapped to an event
	// the worker's rules refuse, and detail is that rejection's text,
	// which names its reasons itself.
	reason  events.Reason
	detail  string
	refused bool
	// body is what a dead letter holds: the body, or the one element of
	// a batch, as it came.
	body []byte
	// deliveryID is the sender's own id of it (Svix message id, Kratos
	// flow id, Auth0 log_id), "" when it had none.
	deliveryID string
	// where is its place in a batch ("line 3", "element 2"), "" for a
	// body of one.
	where string
	// n is the number of elements a dead letter of the overflow holds.
	n int
}

func mapped(ev events.AuthEvent, body []byte, deliveryID string) item {
	return item{ev: ev, mapped: true, body: body, deliveryID: deliveryID}
}

func unmappable(reason events.Reason, body []byte, deliveryID, format string, args ...any) item {
	return item{reason: reason, detail: fmt.Sprintf(format, args...), body: body, deliveryID: deliveryID}
}

// answerTime is how long writing an answer may take once the request's
// publishing is over.
const answerTime = 2 * time.Second

// answer is the body of a 2xx answer: what became of the request's
// events.
type answer struct {
	Published    int `json:"published"`
	Duplicates   int `json:"duplicates"`
	DeadLettered int `json:"dead_lettered"`
	Ignored      int `json:"ignored"`
}

// deliver publishes the request's events and dead-letters the bodies
// that cannot be mapped, in order, then answers: 200 once JetStream
// acknowledged all of them; 503 when an event could not be stored (the
// sender retries; what was stored before is then a duplicate), and 503
// too when a body that cannot be mapped could not be dead-lettered
// either, so that the sender keeps it and sends it again. Past
// Config.MaxDeadLetters dead letters, the rest of the request's
// unmappable elements share one dead letter (overflow), published last.
func (s *Server) deliver(w http.ResponseWriter, r *http.Request, source string, items []item) string {
	// The server's WriteTimeout runs from the request's headers, so the
	// body's arrival and a long Timeout could use it up and lose the
	// answer to a closed connection: the write deadline is moved past the
	// publishing. A writer that cannot (a test recorder) keeps its own.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.cfg.Timeout + answerTime))
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	var a answer
	over := newOverflow(s.js.Conn().MaxPayload())
	for _, it := range items {
		if it.ignored {
			a.Ignored++
			s.m.events.WithLabelValues(source, eventIgnored).Inc()
			continue
		}
		if it.mapped {
			ack, err := s.pub.Publish(ctx, it.ev)
			if reason := events.ReasonOf(err); reason != "" {
				// Mapped, but not an event the worker would take (a user
				// id it refuses, a time too far ahead): dead-lettered
				// like a body that does not map.
				it.mapped, it.refused, it.reason, it.detail = false, true, reason, err.Error()
			} else if err != nil {
				s.outage(source, it.ev.ID, err)
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "event not stored (NATS or JetStream unavailable); send it again"})
				return requestUnavailable
			} else {
				s.recovered()
				if ack.Duplicate {
					a.Duplicates++
					s.m.events.WithLabelValues(source, eventDuplicate).Inc()
				} else {
					a.Published++
					s.m.events.WithLabelValues(source, eventPublished).Inc()
				}
				continue
			}
		}
		if a.DeadLettered >= s.cfg.MaxDeadLetters {
			over.add(it)
			continue
		}
		if !s.keep(ctx, w, source, it, 1) {
			return requestNotKept
		}
		a.DeadLettered++
	}
	for _, it := range over.items(s.cfg.MaxDeadLetters) {
		if !s.keep(ctx, w, source, it, it.n) {
			return requestNotKept
		}
		a.DeadLettered += it.n
	}
	writeJSON(w, http.StatusOK, a)
	return requestOK
}

// keep dead-letters it, which stands for n elements of the request, and
// counts them; when the dead letter is not stored it answers 503 and
// returns false.
func (s *Server) keep(ctx context.Context, w http.ResponseWriter, source string, it item, n int) bool {
	if err := s.deadLetter(ctx, source, it); err != nil {
		s.log.Error().Err(err).Str("source", source).Str("reason", string(it.reason)).Str("delivery_id", it.deliveryID).
			Msg("webhook body cannot be mapped and could not be dead-lettered; answered 503 so that the sender sends it again")
		// 503, not 4xx: the dead-letter stream failing is an outage the
		// senders retry through (Kratos, Svix and Auth0 retry 5xx only).
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "body cannot be mapped to an auth event, and its dead letter was not stored (send it again): " + it.detail,
			"reason": string(it.reason)})
		return false
	}
	s.recovered()
	s.m.events.WithLabelValues(source, eventDeadLettered).Add(float64(n))
	s.log.Warn().Str("source", source).Str("reason", string(it.reason)).Str("delivery_id", it.deliveryID).Str("where", it.where).
		Int("elements", n).Str("error", it.detail).Msg("webhook body cannot be mapped to an auth event: dead-lettered")
	return true
}

func (s *Server) outage(source, eventID string, err error) {
	if !s.failing.Swap(true) {
		s.log.Warn().Err(err).Str("source", source).Str("event_id", eventID).
			Msg("auth events not stored: webhooks are answered 503 (senders retry) until JetStream acknowledges again")
	}
}

func (s *Server) recovered() {
	if s.failing.CompareAndSwap(true, false) {
		s.log.Info().Msg("auth events stored again")
	}
}

// eventID is "<prefix>:<delivery id>" when that is a valid event id, else
// "<prefix>:" and a digest of the delivery id: the same delivery always
// gets the same id, so JetStream stores a retried one once.
func eventID(prefix, deliveryID string) string {
	if id := prefix + ":" + deliveryID; events.ValidEventID(id) {
		return id
	}
	sum := sha256.Sum256([]byte(deliveryID))
	return prefix + ":" + hex.EncodeToString(sum[:16])
}

// provider is prefix, then "-" and name lowercased with every character
// other than a letter or digit made '-', cut to the 64 characters a
// provider name may have; prefix alone when name is empty.
func provider(prefix, name string) string {
	if name == "" {
		return prefix
	}
	var b strings.Builder
	b.WriteString(prefix)
	b.WriteByte('-')
	for _, c := range strings.ToLower(name) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	p := b.String()
	if len(p) > 64 {
		p = p[:64]
	}
	return p
}

// typeName is a type the sender sent, for a dead letter's error:
// quoted as the worker quotes a field name, and when it is over 64 bytes
// cut, the cut and the whole size shown outside the quotes.
func typeName(s string) string {
	const limit = 64
	if len(s) <= limit {
		return strconv.Quote(s)
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "… (" + strconv.Itoa(len(s)) + " bytes)"
}

func subjectToken(s string) bool {
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
