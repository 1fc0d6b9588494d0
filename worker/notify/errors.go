package notify

import "errors"

// errCheckpointUnusable marks a stored checkpoint that cannot be decoded or
// belongs to another collection. The notifier then starts from now and
// publishes a flush-all.
var errCheckpointUnusable = errors.New("checkpoint unusable")

// errCheckpointSuperseded marks a stored checkpoint written before a
// checkpoint of another partition count (supersede.go). The term then
// starts from now and publishes a flush-all.
var errCheckpointSuperseded = errors.New("checkpoint superseded by another partition count's")

// errNoticeStreamLost marks a position (stored, or the term's own) whose
// notices were acknowledged by a notice stream that has since been
// recreated: nothing says issuers read them.
var errNoticeStreamLost = errors.New("the notice stream that acknowledged the position's notices was recreated")

// Errors reported by Notifier.Healthy (wrapped).
var (
	// ErrNotifierNotRunning: Run has not started or has returned.
	ErrNotifierNotRunning = errors.New("notifier not running")
	// ErrNotifierUnhealthy: the lease or the change feed has been
	// failing for longer than UnhealthyAfter, or this replica stepped down
	// because its change feed stalled and has not seen it work since.
	ErrNotifierUnhealthy = errors.New("notifier unhealthy")
)

// errTermEnded cancels the lease context once a term is over.
var errTermEnded = errors.New("leadership term ended")

// ErrNotProvisioned is returned (wrapped) in verify mode when the notice
// stream or a bucket the notifier needs no longer exists.
var ErrNotProvisioned = errors.New("JetStream resources of the notifier are not provisioned")

// errPublishFailed marks a notice publish that failed (no
// acknowledgement, an error reply, a timeout). The term then reopens the
// change stream from its last acknowledged position, which republishes
// the failed notice and every later one with the same Msg-Id.
var errPublishFailed = errors.New("notice publish failed")

// errReopenNow asks for the feed to be reopened from the checkpoint at
// once (not a failure: e.g. the document-size mode changed).
var errReopenNow = errors.New("reopen the change stream")

// errFeedStalled ends a leadership term on purpose: the change feed
// made no progress for StallAfter while every attempt failed, so another
// replica, whose MongoDB may work, should lead.
var errFeedStalled = errors.New("change stream stalled")

// ErrPartitionsUnsupported is returned (wrapped) by Provision when
// Partitions is above 1 and the server cannot evaluate the partition
// filter ($toHashedIndexKey in a $match's $expr): the notifier refuses to
// start rather than watch nothing.
var ErrPartitionsUnsupported = errors.New("the MongoDB server cannot filter change streams into partitions")
