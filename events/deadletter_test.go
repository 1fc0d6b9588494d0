package events

import (
	"testing"

	"github.com/nats-io/nats.go"
)

func TestDeadLetterMsgID(t *testing.T) {
	a := DeadLetterMsgID("AUTH_EVENTS", 7, []byte(`{"id":"a"}`))
	if a != DeadLetterMsgID("AUTH_EVENTS", 7, []byte(`{"id":"a"}`)) {
		t.Fatal("the same dead letter got two ids: a repeat would be stored twice")
	}
	for name, other := range map[string]string{
		"another body at the same sequence (a recreated stream)": DeadLetterMsgID("AUTH_EVENTS", 7, []byte(`{"id":"b"}`)),
		"another sequence": DeadLetterMsgID("AUTH_EVENTS", 8, []byte(`{"id":"a"}`)),
		"another stream":   DeadLetterMsgID("OTHER", 7, []byte(`{"id":"a"}`)),
	} {
		if other == a {
			t.Errorf("%s: same id %q, so the duplicate window would swallow it", name, a)
		}
	}
	if !ValidEventID(a) {
		t.Errorf("%q is not a valid event id (a redriven event without an id of its own takes it)", a)
	}
}

// A dead letter whose body does not fit beside its headers in the
// server's max payload is cut, and says how large it was; one that fits
// is kept whole, and so is any body when no limit is known.
func TestFitDeadLetter(t *testing.T) {
	body := make([]byte, 1000)
	for name, tc := range map[string]struct {
		limit   int64
		cut     bool
		maxBody int
	}{
		"no limit known": {limit: 0, maxBody: 1000},
		"room enough":    {limit: 4096, maxBody: 1000},
		"too little":     {limit: 600, cut: true, maxBody: 600},
	} {
		t.Run(name, func(t *testing.T) {
			h := nats.Header{}
			h.Set(HeaderDLQReason, "malformed_json")
			got := FitDeadLetter(h, body, tc.limit, DefaultDeadLetterStream)
			if tc.cut != (h.Get(HeaderDLQTruncated) == "1000") || len(got) > tc.maxBody || (!tc.cut && len(got) != len(body)) {
				t.Fatalf("limit %d: body %d bytes, %s=%q", tc.limit, len(got), HeaderDLQTruncated, h.Get(HeaderDLQTruncated))
			}
			if tc.cut {
				size := len("NATS/1.0\r\n\r\n") + len(got)
				for k, vs := range h {
					for _, v := range vs {
						size += len(k) + len(": \r\n") + len(v)
					}
				}
				size += len("Nats-Expected-Stream: \r\n") + len(DefaultDeadLetterStream)
				if int64(size) > tc.limit {
					t.Fatalf("the cut dead letter is %d bytes with its headers, over the limit %d", size, tc.limit)
				}
			}
		})
	}
}
