package notify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
)

// checkpointVersion is the format of stored checkpoints.
const checkpointVersion = 1

// checkpoint is the change-stream position up to which every notice has
// been acknowledged by JetStream.
type checkpoint struct {
	Version int `json:"v"`
	// Token is the resume token, raw BSON.
	Token []byte `json:"token"`
	// StartAfter: the token is an invalidate event's; the feed must be
	// reopened with startAfter (resumeAfter would fail).
	StartAfter bool `json:"startAfter,omitempty"`
	// Namespace is "<db>.<collection>", checked on load.
	Namespace   string              `json:"ns"`
	ClusterTime *events.ClusterTime `json:"clusterTime,omitempty"`
	Instance    string              `json:"instance,omitempty"`
	WrittenAt   time.Time           `json:"writtenAt"`
	// NoticeStream names the notice stream that acknowledged every notice
	// before the position: its creation time (RFC 3339, UTC), which the
	// server keeps across restarts and cluster nodes and a recreated
	// stream does not share. Empty in checkpoints written before it
	// existed, or when the stream could not be read.
	NoticeStream string `json:"noticeStream,omitempty"`
	// NoticeSeq is the highest notice stream sequence the writer had seen
	// its notices and heartbeats stored at: a stream whose last sequence
	// is now below it lost them, even with the same creation time (an R1
	// stream rebuilt empty on a wiped cluster node, a restored snapshot).
	NoticeSeq uint64 `json:"noticeSeq,omitempty"`

	// revision is the KV revision it was read at (load); 0 when it was
	// not read from the store.
	revision uint64
}

// checkpointStore keeps one checkpoint per watched collection in a KV
// bucket.
type checkpointStore struct {
	kv        jetstream.KeyValue
	key       string
	namespace string
}

// newCheckpointStore keeps the checkpoint of database.collection under key
// (kvKeyForNamespace, and a partition's suffix: partition.kvKey).
func newCheckpointStore(kv jetstream.KeyValue, key, database, collection string) *checkpointStore {
	return &checkpointStore{kv: kv, key: key, namespace: database + "." + collection}
}

// load returns the stored checkpoint. found is false when there is none.
// A checkpoint that cannot be used returns an error wrapping
// errCheckpointUnusable; any other error means the store could not be read.
func (s *checkpointStore) load(ctx context.Context) (cp checkpoint, found bool, err error) {
	e, err := s.kv.Get(ctx, s.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return checkpoint{}, false, nil
	}
	if err != nil {
		return checkpoint{}, false, fmt.Errorf("read checkpoint %s: %w", s.key, err)
	}
	cp, err = decodeCheckpoint(e.Value(), s.namespace)
	if err != nil {
		return checkpoint{}, false, fmt.Errorf("checkpoint %s (revision %d): %w", s.key, e.Revision(), err)
	}
	cp.revision = e.Revision()
	return cp, true, nil
}

// save stores cp. Writers only ever store positions whose notices are
// acknowledged, so an unconditional put is safe even from a leader that
// has just lost its lease: whichever position wins, every change before it
// was published.
func (s *checkpointStore) save(ctx context.Context, cp checkpoint) error {
	cp.Version = checkpointVersion
	cp.Namespace = s.namespace
	data, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	if _, err := s.kv.Put(ctx, s.key, data); err != nil {
		return fmt.Errorf("write checkpoint %s: %w", s.key, err)
	}
	return nil
}

func decodeCheckpoint(data []byte, namespace string) (checkpoint, error) {
	var cp checkpoint
	if err := json.Unmarshal(data, &cp); err != nil {
		return checkpoint{}, fmt.Errorf("%w: not JSON: %v", errCheckpointUnusable, err)
	}
	if cp.Version != checkpointVersion {
		return checkpoint{}, fmt.Errorf("%w: version %d, want %d", errCheckpointUnusable, cp.Version, checkpointVersion)
	}
	if cp.Namespace != namespace {
		return checkpoint{}, fmt.Errorf("%w: written for %q, not %q", errCheckpointUnusable, cp.Namespace, namespace)
	}
	if len(cp.Token) == 0 {
		return checkpoint{}, fmt.Errorf("%w: no resume token", errCheckpointUnusable)
	}
	if err := bson.Raw(cp.Token).Validate(); err != nil {
		return checkpoint{}, fmt.Errorf("%w: resume token is not a BSON document: %v", errCheckpointUnusable, err)
	}
	return cp, nil
}

// kvSafeName matches names usable verbatim in a KV key.
var kvSafeName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// kvKeyForNamespace is the KV key of a collection's checkpoint and lease:
// "<db>.<coll>" when both are key-safe (readable in `nats kv` tools), else
// "b64.<base64url of db NUL coll>".
func kvKeyForNamespace(database, collection string) string {
	if kvSafeName.MatchString(database) && kvSafeName.MatchString(collection) {
		return database + "." + collection
	}
	return "b64." + base64.RawURLEncoding.EncodeToString([]byte(database+"\x00"+collection))
}
