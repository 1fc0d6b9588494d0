package notify

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
)

// A checkpoint is superseded when a checkpoint of the same collection kept
// under another partition count was written after it: that layout led
// since, so this one's position is no longer where issuers stand.
// Resuming it would replay every change since this count last ran, and
// while the term catches up its heartbeats keep issuers caching, so
// tokens could be stale until it has. The term starts from now after a
// checkpoint_superseded flush-all instead.
//
// "After" is decided by KV revisions: a bucket's revisions are its
// stream's sequence numbers, ordered across all of its keys, so no clock
// is compared.

// checkpointRef names a stored checkpoint: its key and KV revision.
type checkpointRef struct {
	key      string
	revision uint64
}

// supersededBy returns the newest of others, and whether it was written
// after own.
func supersededBy(own checkpointRef, others []checkpointRef) (checkpointRef, bool) {
	var newest checkpointRef
	for _, o := range others {
		if o.key != own.key && o.revision > newest.revision {
			newest = o
		}
	}
	return newest, newest.revision > own.revision
}

// supersedeCheck is a term's check of the checkpoint it starts from.
type supersedeCheck struct {
	// done: the first checkpoint the term read was checked. Later reads
	// are of the term's own writes, or of a deposed leader's of this
	// layout, which continue what the term started from; with both
	// layouts leading during a rollout a later check would flush at
	// every reopen.
	done bool
	// stale is the revision of the stored checkpoint found superseded
	// (0: none): it stays unused for the whole term, even when the term
	// reopens before its first write of its own.
	stale uint64
}

// checkSuperseded returns an error wrapping errCheckpointSuperseded when
// stored, this term's first read of its checkpoint, is superseded. An
// error reading the other counts' keys is logged and the checkpoint
// resumed, as it was before the check existed.
func (tm *term) checkSuperseded(ctx context.Context, stored checkpoint) error {
	if tm.supersede.stale != 0 && stored.revision == tm.supersede.stale {
		return fmt.Errorf("%w: %s (revision %d)", errCheckpointSuperseded, tm.store.key, stored.revision)
	}
	if tm.supersede.done {
		return nil
	}
	tm.supersede.done = true
	sctx, cancel := context.WithTimeout(ctx, tm.cfg.feedOpTimeout())
	defer cancel()
	others, err := otherCountCheckpoints(sctx, tm.store.kv, kvKeyForNamespace(tm.data.Database, tm.data.Collection), max(1, tm.part.count))
	if err != nil {
		if ctx.Err() == nil {
			tm.log.Warn().Err(err).Msg("could not read the checkpoints of other partition counts: resuming the checkpoint " +
				"without knowing whether another NOTIFIER_PARTITIONS ran since")
		}
		return nil
	}
	own := checkpointRef{key: tm.store.key, revision: stored.revision}
	newer, superseded := supersededBy(own, others)
	if !superseded {
		return nil
	}
	tm.supersede.stale = stored.revision
	tm.log.Warn().Str("checkpoint", own.key).Uint64("revision", own.revision).
		Str("newer_checkpoint", newer.key).Uint64("newer_revision", newer.revision).
		Str("reason", string(events.FlushCheckpointSuperseded)).
		Msg("checkpoint superseded: another NOTIFIER_PARTITIONS count wrote a checkpoint after it, so this count's " +
			"position is stale; starting from now after a flush-all instead of replaying every change since")
	return fmt.Errorf("%w: %s (revision %d) by %s (revision %d)", errCheckpointSuperseded, own.key, own.revision, newer.key, newer.revision)
}

// otherCountCheckpoints lists the checkpoints of the collection (keys
// under base) kept under partition counts other than count: every
// partition's of each count whose partition-0 key the bucket holds. A
// count that ran has one unless its partition 0 was never led, as the
// warning at start assumes too (warnIfPartitionsChanged). That is one read
// per other count, plus one per partition of each count found, and no
// listing (otherCounts): at most 63 reads when only this count ran.
func otherCountCheckpoints(ctx context.Context, kv jetstream.KeyValue, base string, count int) ([]checkpointRef, error) {
	var out []checkpointRef
	err := otherCounts(ctx, kv, base, count, func(c int, p0 jetstream.KeyValueEntry) error {
		out = append(out, checkpointRef{key: p0.Key(), revision: p0.Revision()})
		for i := 1; i < c; i++ {
			e, err := getEntry(ctx, kv, partition{i, c}.kvKey(base))
			if err != nil {
				return err
			}
			if e != nil {
				out = append(out, checkpointRef{key: e.Key(), revision: e.Revision()})
			}
		}
		return nil
	})
	return out, err
}

// otherCounts calls found with the partition-0 checkpoint entry (under
// base) of every partition count other than count, 1 to
// MaxNotifierPartitions, that the bucket holds. It reads keys one by one
// (direct gets, which the worker may do) rather than listing the bucket,
// which needs a consumer on it that a worker's NATS user is not allowed
// to create (deploy/nats/nats.conf).
func otherCounts(ctx context.Context, kv jetstream.KeyValue, base string, count int, found func(c int, p0 jetstream.KeyValueEntry) error) error {
	for c := 1; c <= MaxNotifierPartitions; c++ {
		if c == count {
			continue
		}
		e, err := getEntry(ctx, kv, partition{0, c}.kvKey(base))
		if err != nil {
			return err
		}
		if e != nil {
			if err := found(c, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// getEntry reads key; nil when the bucket does not hold it.
func getEntry(ctx context.Context, kv jetstream.KeyValue, key string) (jetstream.KeyValueEntry, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read checkpoint %s: %w", key, err)
	}
	return e, nil
}
