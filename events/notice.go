package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// NoticeSchemaVersion is the notice schema this package writes.
const NoticeSchemaVersion = 1

// NoticeKind tells a per-document notice from a flush-all.
type NoticeKind string

// Notice kinds.
const (
	// NoticeUser: drop what you cached for UserID (and/or DocumentID).
	NoticeUser NoticeKind = "user"
	// NoticeFlushAll: continuity was lost; drop everything you cached.
	NoticeFlushAll NoticeKind = "flush_all"
	// NoticeHeartbeat: the leading notifier is alive (HeartbeatSubject);
	// nothing to drop.
	NoticeHeartbeat NoticeKind = "heartbeat"
)

// FlushReason says why a flush-all was published.
type FlushReason string

// Flush reasons.
const (
	FlushNoCheckpoint   FlushReason = "no_checkpoint"
	FlushBadCheckpoint  FlushReason = "checkpoint_unusable"
	FlushHistoryLost    FlushReason = "history_lost"
	FlushCollectionGone FlushReason = "collection_dropped_or_renamed"
	FlushInvalidated    FlushReason = "stream_invalidated"
	FlushUnattributable FlushReason = "change_without_user_or_id"
	// FlushPositionUnreadable: the server could not read the stream from
	// its position, repeatedly (the same error, or out of time), so it
	// was restarted from now.
	FlushPositionUnreadable FlushReason = "position_unreadable"
	// FlushCheckpointSuperseded: the checkpoint was found, but a
	// checkpoint of the same collection under another partition count
	// (NOTIFIER_PARTITIONS) was written after it, so that layout ran
	// since; the stream was started from now instead of replaying every
	// change since this count last ran.
	FlushCheckpointSuperseded FlushReason = "checkpoint_superseded"
	// FlushNoticeStreamLost: the notice stream was recreated (deleted, or
	// lost with a NATS server restarted on an empty store) after
	// notices the position counts were stored in it, so issuers may never
	// have read them; the stream was started from now.
	FlushNoticeStreamLost FlushReason = "notice_stream_lost"
)

// Notice is an invalidation notice. Its JSON form is the wire format.
type Notice struct {
	SchemaVersion int        `json:"schemaVersion"`
	Kind          NoticeKind `json:"kind"`
	// UserID names the user whose data changed, when known. Notices on
	// the document subject (a delete, or a possible owner change, on a
	// server without pre-images) carry only DocumentID.
	UserID string `json:"userId,omitempty"`
	// DocumentID is the changed document's _id as a string: the hex of an
	// ObjectId, the value of a string id, else its canonical extended JSON.
	DocumentID string `json:"documentId,omitempty"`
	// Operation is the MongoDB change: insert, update, replace, delete, or
	// for flush-all the stream event that caused it.
	Operation string `json:"operation,omitempty"`
	// ChangedFields are the top-level fields an update touched, when the
	// server reported them; empty means "unknown, assume all".
	ChangedFields []string `json:"changedFields,omitempty"`
	// ClusterTime is the commit time of the change.
	ClusterTime *ClusterTime `json:"clusterTime,omitempty"`
	// Oversize is set when the document exceeds the configured size limit.
	Oversize bool `json:"oversize,omitempty"`
	// Reason is set on flush-all notices.
	Reason FlushReason `json:"reason,omitempty"`
	// PublishedAt is when the worker published the notice.
	PublishedAt time.Time `json:"publishedAt"`
	// Partition and Partitions are set on heartbeats of a partitioned
	// notifier (NOTIFIER_PARTITIONS above 1): the heartbeat speaks for
	// partition Partition (0 to Partitions-1) of Partitions. Absent: partition
	// 0 of 1, the whole collection, which is what heartbeats of workers
	// before partitions mean. An issuer hears the notifier as alive only
	// when every partition 0..Partitions-1 was heard within its leader
	// timeout. A flush-all from any partition flushes everything.
	Partition  int `json:"partition,omitempty"`
	Partitions int `json:"partitions,omitempty"`
}

// MaxNoticePartitions bounds Notice.Partitions.
const MaxNoticePartitions = 64

// PartitionOf is the partition a heartbeat speaks for (0 when absent).
func (n Notice) PartitionOf() int { return n.Partition }

// PartitionsOf is how many partitions the notifier that sent a heartbeat
// has (1 when absent).
func (n Notice) PartitionsOf() int { return max(1, n.Partitions) }

// ClusterTime is a MongoDB cluster time (BSON timestamp).
type ClusterTime struct {
	T uint32 `json:"t"`
	I uint32 `json:"i"`
}

// Time returns the wall-clock second of the cluster time.
func (c ClusterTime) Time() time.Time { return time.Unix(int64(c.T), 0).UTC() }

// DecodeNotice parses a notice. Unknown fields are ignored so that issuers
// keep working when later schema versions add fields.
func DecodeNotice(data []byte) (Notice, error) {
	var n Notice
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&n); err != nil {
		return Notice{}, fmt.Errorf("decode notice: %w", err)
	}
	switch n.Kind {
	case NoticeUser:
		if n.UserID == "" && n.DocumentID == "" {
			return Notice{}, fmt.Errorf("decode notice: user notice names neither user nor document")
		}
	case NoticeFlushAll:
	case NoticeHeartbeat:
		if n.Partitions < 0 || n.Partitions > MaxNoticePartitions || n.Partition < 0 || n.Partition >= n.PartitionsOf() {
			return Notice{}, fmt.Errorf("decode notice: heartbeat of partition %d of %d (want 0 ≤ partition < partitions ≤ %d)",
				n.Partition, n.Partitions, MaxNoticePartitions)
		}
	default:
		return Notice{}, fmt.Errorf("decode notice: unknown kind %q", n.Kind)
	}
	return n, nil
}
