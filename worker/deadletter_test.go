package worker

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
		{"max deliver", DeadLetterMaxDeliver, errors.New("boom"), "auth.deadletter.max_deliver_exceeded", DeadLetterMaxDeliver},
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
				HeaderDLQReason:          tc.wantReason,
				HeaderDLQOriginalSubject: "auth.events.login",
				HeaderDLQDeliveryCount:   "4",
				HeaderDLQStreamSequence:  "42",
				HeaderDLQOriginalStream:  "AUTH_EVENTS",
				HeaderDLQOriginalMsgID:   "ev-1",
				jetstream.MsgIDHeader:    "dlq-AUTH_EVENTS-42",
			}
			for k, v := range want {
				if got := dl.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if (tc.cause != nil) != (dl.Header.Get(HeaderDLQError) != "") {
				t.Errorf("Dlq-Error = %q for cause %v", dl.Header.Get(HeaderDLQError), tc.cause)
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
	got := dl.Header.Get(HeaderDLQError)
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
