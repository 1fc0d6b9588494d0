package notify

import (
	"testing"
	"time"
)

// A replica's wait before it takes a free partition grows with what it
// leads, up to half a lease TTL: a lone survivor of many partitions takes
// each over within 1.5 TTL plus a poll, before issuers stop caching.
func TestSpreadDelay(t *testing.T) {
	const ttl = 12 * time.Second
	for _, tc := range []struct {
		partitions, leading int
		want                time.Duration
	}{
		{1, 1, 0},
		{4, 0, 0},
		{4, 1, 2 * time.Second},
		{4, 2, 4 * time.Second},
		{12, 3, 6 * time.Second},
		{64, 63, 6 * time.Second},
	} {
		n := &Notifier{cfg: Config{LeaseTTL: ttl}}
		for i := range tc.partitions {
			s := &slot{}
			s.leader.Store(i < tc.leading)
			n.slots = append(n.slots, s)
		}
		if got := n.spreadDelay(); got != tc.want {
			t.Errorf("%d partitions, leading %d: spreadDelay %s, want %s", tc.partitions, tc.leading, got, tc.want)
		}
	}
}
