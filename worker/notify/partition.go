package notify

import (
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Partition bounds (Config.Partitions).
const (
	DefaultNotifierPartitions = 1
	// MaxNotifierPartitions bounds Partitions: each partition is a change
	// stream on the server, a lease and a checkpoint, and a label value of
	// the per-partition metrics.
	MaxNotifierPartitions = 64
)

// partition is one share of the watched collection's changes: those whose
// documentKey._id hashes into index, of count shares. The zero-valued
// partition of one (count 1) is the unpartitioned notifier, whose lease
// key, checkpoint key, pipeline and notices are exactly those of a
// notifier that knows nothing of partitions.
//
// The key is documentKey._id, not the user id: every change event carries
// it (the user id only comes with fullDocument, which updateLookup adds
// after the filter), and it is stable across owner changes, so all changes
// of one document, and the notices about its previous and current owner,
// come from one partition, in order.
type partition struct{ index, count int }

// partitioned reports whether the collection is split at all.
func (p partition) partitioned() bool { return p.count > 1 }

// String names the partition in keys, logs and labels: "p2of4"; the
// unpartitioned notifier has no name.
func (p partition) String() string {
	if !p.partitioned() {
		return ""
	}
	return fmt.Sprintf("p%dof%d", p.index, p.count)
}

// label is the partition metrics label value: its index.
func (p partition) label() string { return fmt.Sprint(p.index) }

// kvKey is the lease or checkpoint key of this partition: base itself when
// unpartitioned (existing deployments keep their checkpoint), else
// base.p<i>of<N>. Naming N means a change of N finds no checkpoint and
// starts each partition with a no_checkpoint flush-all, instead of resuming
// a position under which other changes were filtered in or out.
func (p partition) kvKey(base string) string {
	if !p.partitioned() {
		return base
	}
	return base + "." + p.String()
}

// matchStage is the change-stream stage that keeps this partition's
// changes; nil when unpartitioned. It goes first in the pipeline: it reads
// only documentKey, which the server's post-image stage (updateLookup)
// does not modify and which that stage declares it can swap with a $match
// (src/mongo/db/pipeline/document_source_change_stream_add_post_image.h,
// canSwapWithMatch, in the server's source), so the server can filter
// before it looks documents up, and the other partitions' updates cost no
// lookup here. $expr is accepted in a change stream's $match (the
// server's own tests use it on documentKey, jstests/change_streams/
// oplog_rewrite/change_stream_match_pushdown_documentKey_rewrite.js); a
// hash over it is not rewritten into the oplog scan, so each partition's
// cursor still reads every oplog entry of the collection (docs/SCALING.md).
//
// $toHashedIndexKey is the hash of hashed indexes ("Computes and returns
// the hash value of the input expression using the same hash function
// that MongoDB uses to create a hashed index",
// https://www.mongodb.com/docs/manual/reference/operator/aggregation/toHashedIndexKey/):
// the first 8 bytes of the MD5 of the BSON value, little-endian, so every
// replica and every server version agrees on it. Events without a
// documentKey._id (drop, rename, dropDatabase, invalidate, and anything
// the notifier would flush for) pass every partition: each partition must
// see the end of its feed and flush, and the flush-alls share the event's
// Nats-Msg-Id, so JetStream stores one. So do changes of a document whose
// _id is null (or MinKey): announced by every partition under one
// Nats-Msg-Id, stored once.
func (p partition) matchStage() bson.D {
	if !p.partitioned() {
		return nil
	}
	id := "$documentKey._id"
	return bson.D{{Key: "$match", Value: bson.D{{Key: "$expr", Value: bson.D{{Key: "$or", Value: bson.A{
		// Missing (and null or MinKey, which sort with it) is at most null
		// in BSON order; every other _id is above it.
		bson.D{{Key: "$lte", Value: bson.A{id, nil}}},
		bson.D{{Key: "$eq", Value: bson.A{
			bson.D{{Key: "$abs", Value: bson.D{{Key: "$mod", Value: bson.A{
				bson.D{{Key: "$toHashedIndexKey", Value: id}}, int64(p.count),
			}}}}},
			int64(p.index),
		}}},
	}}}}}}}
}

// partitions lists the partitions of a notifier with count shares.
func partitions(count int) []partition {
	count = max(1, count)
	out := make([]partition, count)
	for i := range out {
		out[i] = partition{index: i, count: count}
	}
	return out
}
