package notify

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/internal/lease"
)

// slot is this replica's side of one partition: its lease, its checkpoint,
// whether this replica leads it and how that goes. An unpartitioned
// notifier has one slot; a partitioned one competes for every slot at once
// (see Run), one goroutine per slot.
type slot struct {
	part   partition
	log    zerolog.Logger
	health *notifierHealth
	leader atomic.Bool

	// handoff asks the current term to end and give the lease to another
	// replica (rebalance); at most one request waits.
	handoff chan struct{}
	// watch sees the sequences this slot's notices and heartbeats are
	// stored at, across its terms (noticestream.go).
	watch *streamWatch

	// Bound by Provision or on first use in Run (Notifier.bindMu).
	lease       *lease.Lease
	checkpoints *checkpointStore
}

func newSlot(part partition, log zerolog.Logger) *slot {
	if part.partitioned() {
		log = log.With().Str("partition", part.String()).Logger()
	}
	return &slot{part: part, log: log, health: &notifierHealth{}, handoff: make(chan struct{}, 1), watch: &streamWatch{}}
}

// leading counts the partitions this replica leads.
func (n *Notifier) leading() int {
	led := 0
	for _, s := range n.slots {
		if s.leader.Load() {
			led++
		}
	}
	return led
}

// warnIfPartitionsChanged looks in the checkpoint bucket for checkpoints
// of this collection kept under another partition count, and says loudly
// that this start (a new NOTIFIER_PARTITIONS) resumes none of them: every
// partition starts from now after a no_checkpoint flush-all, so issuers
// drop their whole cache once. Best effort: a bucket it cannot read only
// loses the warning.
func (n *Notifier) warnIfPartitionsChanged(ctx context.Context) {
	if len(n.slots) == 0 || n.slots[0].checkpoints == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	others, err := otherPartitionCheckpoints(ctx, n.slots[0].checkpoints.kv, kvKeyForNamespace(n.data.Database, n.data.Collection), len(n.slots))
	if err != nil || len(others) == 0 {
		return
	}
	n.log.Warn().Int("partitions", len(n.slots)).Strs("other_checkpoints", others).
		Msg("NOTIFIER_PARTITIONS changed: checkpoints exist for another partition count and are not resumed; " +
			"every partition without a checkpoint starts from now after a no_checkpoint flush-all (issuers drop their whole cache once); " +
			"the old checkpoints are left in the bucket, harmlessly: going back to that count later finds them superseded by this count's " +
			"and starts from now after a checkpoint_superseded flush-all (deleting them is optional)")
}

// otherPartitionCheckpoints lists the partition-0 checkpoint keys (under
// base) of every partition count other than count that the bucket holds;
// none when count's own partition-0 checkpoint is there (a restart, not a
// change).
func otherPartitionCheckpoints(ctx context.Context, kv jetstream.KeyValue, base string, count int) ([]string, error) {
	if ours, err := getEntry(ctx, kv, partition{0, count}.kvKey(base)); ours != nil || err != nil {
		return nil, err
	}
	var others []string
	err := otherCounts(ctx, kv, base, count, func(_ int, p0 jetstream.KeyValueEntry) error {
		others = append(others, p0.Key())
		return nil
	})
	return others, err
}
