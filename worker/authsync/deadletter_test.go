package authsync

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// fakeMsg is the part of a jetstream.Msg a dead letter reads.
type fakeMsg struct {
	jetstream.Msg
	subject string
	data    []byte
	header  nats.Header
}

func (m fakeMsg) Subject() string      { return m.subject }
func (m fakeMsg) Data() []byte         { return m.data }
func (m fakeMsg) Headers() nats.Header { return m.header }

func TestDeadLetterMessageHeaders(t *testing.T) {
	d := &deadLetterer{stream: "AUTH_EVENTS_DLQ", prefix: "auth.deadletter"}
	orig := fakeMsg{subject: "auth.events.login", data: []byte(`{"x":1}`), header: nats.Header{"Nats-Msg-Id": []string{"ev-1"}}}
	meta := &jetstream.MsgMetadata{Stream: "AUTH_EVENTS", NumDelivered: 4, Sequence: jetstream.SequencePair{Stream: 42, Consumer: 7}}
	cases := []struct {
		name, reason string
		cause        error
		wantSubject  string
		wantReason   string
	}{
		{"decoder reason", "malformed_json", errors.New("invalid auth event: malformed_json: x"), "auth.deadletter.malformed_json", "malformed_json"},
		{"max deliver", events.DeadLetterMaxDeliver, errors.New("boom"), "auth.deadletter.max_deliver_exceeded", events.DeadLetterMaxDeliver},
		{"unsafe reason", "a.b>", nil, "auth.deadletter.unknown", "unknown"},
		{"empty reason", "", nil, "auth.deadletter.unknown", "unknown"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dl := d.deadLetterMsg(orig, meta, tc.reason, tc.cause)
			if dl.Subject != tc.wantSubject {
				t.Fatalf("subject = %s, want %s", dl.Subject, tc.wantSubject)
			}
			want := map[string]string{
				events.HeaderDLQReason:          tc.wantReason,
				events.HeaderDLQOriginalSubject: "auth.events.login",
				events.HeaderDLQDeliveryCount:   "4",
				events.HeaderDLQStreamSequence:  "42",
				events.HeaderDLQOriginalStream:  "AUTH_EVENTS",
				events.HeaderDLQOriginalMsgID:   "ev-1",
				jetstream.MsgIDHeader:           "dlq-AUTH_EVENTS-42-bdd3d53c3a0b3fd6", // FNV-1a 64 of the body
			}
			for k, v := range want {
				if got := dl.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if (tc.cause != nil) != (dl.Header.Get(events.HeaderDLQError) != "") {
				t.Errorf("Dlq-Error = %q for cause %v", dl.Header.Get(events.HeaderDLQError), tc.cause)
			}
			if string(dl.Data) != `{"x":1}` {
				t.Errorf("data = %s, want the original", dl.Data)
			}
		})
	}
}

func TestDeadLetterErrorIsBounded(t *testing.T) {
	d := &deadLetterer{stream: "DLQ", prefix: "dlq"}
	dl := d.deadLetterMsg(fakeMsg{subject: "s"}, nil, "x", errors.New(strings.Repeat("é", 2000)))
	got := dl.Header.Get(events.HeaderDLQError)
	if len(got) > maxDeadLetterErrorLength+len("…") || !strings.HasSuffix(got, "…") {
		t.Fatalf("Dlq-Error is %d bytes", len(got))
	}
	if dl.Header.Get(jetstream.MsgIDHeader) != "" {
		t.Fatalf("without metadata there is no stable id to de-duplicate on")
	}
}

func TestDeadLetterReasonOfDecoderErrors(t *testing.T) {
	if got := deadLetterReason(errors.New("plain")); got != "unknown" {
		t.Fatalf("reason of a plain error = %q", got)
	}
}

// TestDeadLetterFitsTheMaxPayload: a message published near the server's
// max payload still fits in the dead-letter stream beside the headers, cut
// and marked, instead of failing to publish and being redelivered forever.
func TestDeadLetterFitsTheMaxPayload(t *testing.T) {
	const limit = 4096
	meta := &jetstream.MsgMetadata{Stream: "AUTH_EVENTS", NumDelivered: 1, Sequence: jetstream.SequencePair{Stream: 9}}
	tests := []struct {
		name          string
		body          int
		wantTruncated bool
	}{
		{"small body kept whole", 100, false},
		{"body at the limit is cut", limit - 10, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &deadLetterer{stream: "DLQ", prefix: "dlq", maxPayload: func() int64 { return limit }}
			orig := fakeMsg{subject: "auth.events.login", data: []byte(strings.Repeat("x", tt.body)), header: nats.Header{}}
			dl := d.deadLetterMsg(orig, meta, "too_large", errors.New("invalid auth event: too_large"))
			// What the client checks at publish, including the header
			// WithExpectStream adds then.
			size := len(dl.Data) + len("NATS/1.0\r\n\r\n") + len(jetstream.ExpectedStreamHeader+": DLQ\r\n")
			for k, vs := range dl.Header {
				for _, v := range vs {
					size += len(k) + len(": \r\n") + len(v)
				}
			}
			if size > limit {
				t.Fatalf("dead letter is %d bytes with headers, limit %d", size, limit)
			}
			truncated := dl.Header.Get(events.HeaderDLQTruncated)
			if tt.wantTruncated != (truncated != "") {
				t.Fatalf("Dlq-Truncated = %q, want set=%v", truncated, tt.wantTruncated)
			}
			if tt.wantTruncated && truncated != fmt.Sprint(tt.body) {
				t.Errorf("Dlq-Truncated = %s, want the original size %d", truncated, tt.body)
			}
			if !tt.wantTruncated && len(dl.Data) != tt.body {
				t.Errorf("body is %d bytes, want %d", len(dl.Data), tt.body)
			}
		})
	}
}

// TestAuthEventAtMaxPayloadIsDeadLettered: an event as large as the server
// accepts is dead-lettered (cut, marked with its size) and terminated,
// rather than redelivered forever because the copy plus headers is larger
// than the server's max payload.
func TestAuthEventAtMaxPayloadIsDeadLettered(t *testing.T) {
	e := newAuthEnv(t, testsupport.MongoDB(t))
	e.start()
	subject := events.AuthSubject(events.DefaultAuthPrefix, events.OperationLogin)
	body := []byte(strings.Repeat("x", int(e.nc.MaxPayload())-64))
	e.publishRaw(subject, body)
	e.waitSettled()
	dls := e.deadLetters()
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	h := dls[0].Header
	if h.Get(events.HeaderDLQReason) != string(events.ReasonTooLarge) {
		t.Errorf("Dlq-Reason = %q, want too_large", h.Get(events.HeaderDLQReason))
	}
	if h.Get(events.HeaderDLQTruncated) != fmt.Sprint(len(body)) {
		t.Errorf("Dlq-Truncated = %q, want %d", h.Get(events.HeaderDLQTruncated), len(body))
	}
	if e.count() != 0 {
		t.Errorf("%d documents written, want none", e.count())
	}
}
