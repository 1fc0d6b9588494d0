package triggers

import (
	"fmt"
	"testing"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
)

// BenchmarkDecide measures the trigger decision for one LOGIN with the
// built-in defaults (what the worker does per event after decoding).
//
//	go test -run '^$' -bench Decide -benchmem ./triggers/
func BenchmarkDecide(b *testing.B) {
	set, err := NewSet(DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	ev := events.NewAuthEvent(events.OperationLogin, "65f0c1a2b3c4d5e6f7a8b9c0", "local-userpass")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := set.Decide(ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCoalesce measures coalescing one batch of 100 lastLogin writes,
// all of distinct users (nothing merges) and spread over 10 users (most
// merge), per batch, with Coalesce and with CoalesceShared.
//
//	go test -run '^$' -bench Coalesce -benchmem ./triggers/
func BenchmarkCoalesce(b *testing.B) {
	base := time.Now().UTC()
	for _, users := range []int{100, 10} {
		writes := make([]Write, 100)
		for i := range writes {
			writes[i] = Write{
				UserID: fmt.Sprintf("user-%d", i%users),
				Max:    map[string]any{"lastLogin": base.Add(time.Duration(i) * time.Millisecond)},
			}
		}
		b.Run(fmt.Sprintf("batch-100-users-%d", users), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if rounds := Coalesce(writes); len(rounds) != 1 || len(rounds[0]) != users {
					b.Fatalf("%d rounds", len(rounds))
				}
			}
		})
		// What the worker calls: no copies of single-write results.
		b.Run(fmt.Sprintf("shared-batch-100-users-%d", users), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if rounds := CoalesceShared(writes); len(rounds) != 1 || len(rounds[0]) != users {
					b.Fatalf("%d rounds", len(rounds))
				}
			}
		})
	}
}
