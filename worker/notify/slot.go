package notify

import (
	"context"
	"errors"
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

	// Bound by Provision or on first use in Run (Notifier.bindMu).
	lease       *lease.Lease
	checkpoints *checkpointStore
}

func newSlot(part partition, log zerolog.Logger) *slot {
	if part.partitioned() {
		log = log.With().Str("partition", part.String()).Logger()
	}
	return &slot{part: part, log: log, health: &notifierHealth{}, handoff: make(chan struct{}, 1)}
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
			"the old checkpoints are left in the bucket (delete them once no replica runs with the old count)")
}

// otherPartitionCheckpoints lists the partition-0 checkpoint keys (under
// base) of every partition count other than count that the bucket holds;
// none when count's own partition-0 checkpoint is there (a restart, not a
// change). It reads keys one by one (direct gets, which the worker may do)
// rather than listing the bucket, which needs a consumer on it that a
// worker's NATS user is not allowed to create (deploy/nats/nats.conf).
func otherPartitionCheckpoints(ctx context.Context, kv jetstream.KeyValue, base string, count int) ([]string, error) {
	exists := func(key string) (bool, error) {
		_, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	if ours, err := exists(partition{0, count}.kvKey(base)); ours || err != nil {
		return nil, err
	}
	var others []string
	for c := 1; c <= MaxNotifierPartitions; c++ {
		if c == count {
			continue
		}
		key := partition{0, c}.kvKey(base)
		found, err := exists(key)
		if err != nil {
			return others, err
		}
		if found {
			others = append(others, key)
		}
	}
	return others, nil
}
