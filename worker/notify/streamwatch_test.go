package notify

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// The watch tells a recreated stream from acknowledgements handled out of
// order: only an acknowledgement at or below the sequence acknowledged
// before its message was sent is lower.
func TestStreamWatch(t *testing.T) {
	type step struct {
		floor int64  // taken when the message was sent (-1: just before this ack, as for a lone publish)
		seq   uint64 // acknowledged at
		dup   bool
	}
	for _, tc := range []struct {
		name  string
		steps []step
		lower bool
	}{
		{"in order", []step{{-1, 1, false}, {-1, 2, false}, {-1, 3, false}}, false},
		// A heartbeat sent while notices 10 and 11 were in flight (floor 9),
		// stored at 12, is handled before them: nothing is lower.
		{"concurrent acks out of order", []step{{-1, 9, false}, {9, 12, false}, {9, 10, false}, {9, 11, false}}, false},
		{"recreated: stored at 1 after 40 was acknowledged", []step{{-1, 40, false}, {-1, 1, false}}, true},
		{"recreated, stored at the floor", []step{{-1, 40, false}, {-1, 40, false}}, true},
		{"a duplicate carries an earlier sequence", []step{{-1, 40, false}, {-1, 7, true}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &streamWatch{}
			for _, st := range tc.steps {
				floor := w.floor()
				if st.floor >= 0 {
					floor = uint64(st.floor)
				}
				w.stored(&jetstream.PubAck{Sequence: st.seq, Duplicate: st.dup}, floor)
			}
			if got := w.sawLower(); got != tc.lower {
				t.Fatalf("sawLower = %v, want %v", got, tc.lower)
			}
		})
	}
}
