package dlq

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
)

// An event without an id of its own keeps one root across redrives: its
// first redrive names the root, its dead letter keeps it, so the next
// redrive is root.redrive-2, not a root of a root.
func TestRedriveKeepsOneRootForAnEventWithoutID(t *testing.T) {
	first := Entry{Sequence: 7, Data: []byte(`{"x":1}`)}
	m := redriveMsg("AUTH_EVENTS_DLQ", first)
	root := events.DeadLetterMsgID("AUTH_EVENTS_DLQ", 7, first.Data)
	if got := m.Header.Get(jetstream.MsgIDHeader); got != root+".redrive-1" {
		t.Fatalf("first redrive id %q, want %q", got, root+".redrive-1")
	}
	if got := m.Header.Get(events.HeaderDLQOriginalMsgID); got != root {
		t.Fatalf("first redrive names %q as the original id, want the root %q", got, root)
	}
	// Failed again: its dead letter (another sequence) keeps the root.
	again := Entry{Sequence: 12, Data: first.Data, OriginalMsgID: root, RedriveCount: 1}
	if got := redriveMsg("AUTH_EVENTS_DLQ", again).Header.Get(jetstream.MsgIDHeader); got != root+".redrive-2" {
		t.Fatalf("second redrive id %q, want %q", got, root+".redrive-2")
	}
}
