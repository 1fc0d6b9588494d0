package authsync

import (
	"time"

	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

// batchOrder keeps each user's events in stream order within a batch and
// across batches: once one of a user's events is sent back for
// redelivery (or held behind an earlier one outside the batch), the rest
// of that user's events in the batch wait too, settled with the others
// after the writes (see retryOrDeadLetter).
type batchOrder struct {
	holds    *userHolds
	inBatch  func(seq uint64) bool
	retrying map[string]bool
}

func newBatchOrder(items []*authItem, holds *userHolds) *batchOrder {
	seqs := make(map[uint64]bool, len(items))
	for _, it := range items {
		seqs[it.streamSeq()] = true
	}
	return &batchOrder{holds: holds, inBatch: func(seq uint64) bool { return seqs[seq] }, retrying: map[string]bool{}}
}

// holdBack reports whether it must wait behind an earlier event of user
// (and marks it so).
func (o *batchOrder) holdBack(it *authItem, user string) bool {
	if o.retrying[user] {
		it.fail(customdata.Retry, errBlockedByEarlierWrite)
		return true
	}
	if wait, held := o.holds.blocker(user, it.streamSeq(), o.inBatch, time.Now()); held {
		it.fail(customdata.Retry, errBlockedByEarlierWrite)
		it.holdFor, it.heldOutside = wait, true
		o.retrying[user] = true
		return true
	}
	return false
}

// sentBack records that one of user's events goes back for redelivery.
func (o *batchOrder) sentBack(user string) { o.retrying[user] = true }
