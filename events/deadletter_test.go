package events

import "testing"

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
