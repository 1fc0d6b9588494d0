package notify

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/lease"
	"github.com/customdata-worker/customdata-worker/internal/outage"
	"github.com/customdata-worker/customdata-worker/internal/provision"
)

// Provision creates (provision.Create) or verifies (provision.Verify) the
// notice stream and both KV buckets, and with PreAndPostImages enables
// pre-images on the collection. It is idempotent. Each request is bounded
// (requestTimeout), whatever ctx's deadline.
func (n *Notifier) Provision(ctx context.Context) error {
	streamCfg := jetstream.StreamConfig{
		Name:        n.cfg.Stream,
		Description: "Custom-data invalidation notices (customdata-worker)",
		Subjects:    n.cfg.noticeSubjects(),
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      n.cfg.MaxAge,
		Duplicates:  n.streams.DuplicateWindow,
		Replicas:    n.streams.Replicas,
		Storage:     jetstream.FileStorage,
	}
	cpCfg := jetstream.KeyValueConfig{
		Bucket:      n.cfg.CheckpointBucket,
		Description: "Change-stream checkpoints of the customdata-worker notifier",
		History:     5,
		Replicas:    n.streams.Replicas,
		Storage:     jetstream.FileStorage,
	}
	leaseCfg := jetstream.KeyValueConfig{
		Bucket:      n.cfg.LeaseBucket,
		Description: "Change-stream leadership lease of the customdata-worker notifier; TTL is the lease TTL",
		History:     1,
		TTL:         n.cfg.LeaseTTL,
		Replicas:    n.streams.Replicas,
		Storage:     jetstream.FileStorage,
	}
	var cpKV, leaseKV jetstream.KeyValue
	switch n.streams.Mode {
	case provision.Create:
		if err := n.bounded(ctx, func(ctx context.Context) (err error) {
			_, err = n.js.CreateOrUpdateStream(ctx, streamCfg)
			return err
		}); err != nil {
			return fmt.Errorf("notifier: provision stream %s: %w", n.cfg.Stream, err)
		}
		if err := n.bounded(ctx, func(ctx context.Context) (err error) {
			cpKV, err = n.js.CreateOrUpdateKeyValue(ctx, cpCfg)
			return err
		}); err != nil {
			return fmt.Errorf("notifier: provision bucket %s: %w", cpCfg.Bucket, err)
		}
		if err := n.bounded(ctx, func(ctx context.Context) (err error) {
			leaseKV, err = n.js.CreateOrUpdateKeyValue(ctx, leaseCfg)
			return err
		}); err != nil {
			return fmt.Errorf("notifier: provision bucket %s: %w", leaseCfg.Bucket, err)
		}
	default:
		if err := n.verifyStream(ctx); err != nil {
			return err
		}
		if err := n.bounded(ctx, func(ctx context.Context) (err error) {
			cpKV, err = n.js.KeyValue(ctx, cpCfg.Bucket)
			return err
		}); err != nil {
			return fmt.Errorf("notifier: checkpoint bucket %s: %w", cpCfg.Bucket, err)
		}
		if err := n.bounded(ctx, func(ctx context.Context) (err error) {
			leaseKV, err = n.js.KeyValue(ctx, leaseCfg.Bucket)
			return err
		}); err != nil {
			return fmt.Errorf("notifier: lease bucket %s: %w", leaseCfg.Bucket, err)
		}
		var st jetstream.KeyValueStatus
		err := n.bounded(ctx, func(ctx context.Context) (err error) {
			st, err = leaseKV.Status(ctx)
			return err
		})
		if err != nil {
			return fmt.Errorf("notifier: lease bucket %s: %w", leaseCfg.Bucket, err)
		}
		if st.TTL() != n.cfg.LeaseTTL {
			return fmt.Errorf("notifier: lease bucket %s has TTL %s, want the lease TTL %s", leaseCfg.Bucket, st.TTL(), n.cfg.LeaseTTL)
		}
	}
	if err := n.checkPartitionFilter(ctx); err != nil {
		return err
	}
	n.bind(cpKV, leaseKV)
	n.ensurePreImages(ctx)
	return nil
}

// checkPartitionFilter, with Partitions above 1, asks the server to
// evaluate the partition filter (partition.matchStage) on the collection,
// so that a server without $toHashedIndexKey (documented from MongoDB 7.0's
// manual on) is refused at start, naming the setting, instead of failing
// every change-stream open. An outage is returned as is (retried by the
// caller); any other refusal is left to the feed, which reports it.
func (n *Notifier) checkPartitionFilter(ctx context.Context) error {
	if n.cfg.Partitions < 2 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.feedOpTimeout())
	defer cancel()
	// $limit first: the filter is parsed whatever the collection holds and
	// evaluated on one document at most.
	match := partition{index: 0, count: n.cfg.Partitions}.matchStage()
	err := func() error {
		cur, err := n.coll.Aggregate(ctx, mongo.Pipeline{{{Key: "$limit", Value: 1}}, match})
		if err != nil {
			return err
		}
		defer func() { _ = cur.Close(context.WithoutCancel(ctx)) }()
		for cur.Next(ctx) {
		}
		return cur.Err()
	}()
	switch {
	case err == nil:
		return nil
	case classifyFeedError(err) == feedPipelineUnsupported:
		return fmt.Errorf("notifier: %w: NOTIFIER_PARTITIONS=%d needs $toHashedIndexKey in a change stream's $match (MongoDB 7.0 or later); "+
			"set it to 1 or upgrade the server: %w", ErrPartitionsUnsupported, n.cfg.Partitions, err)
	case outage.Is(err):
		return err
	}
	n.log.Warn().Err(err).Int("code", outage.FirstCode(err)).Msg("could not check that the server evaluates the partition filter; the change streams will tell")
	return nil
}

func (n *Notifier) verifyStream(ctx context.Context) error {
	var s jetstream.Stream
	err := n.bounded(ctx, func(ctx context.Context) (err error) {
		s, err = n.js.Stream(ctx, n.cfg.Stream)
		return err
	})
	if err != nil {
		return fmt.Errorf("notifier: stream %s: %w", n.cfg.Stream, err)
	}
	info := s.CachedInfo()
	probe := n.cfg.SubjectPrefix + ".user.x"
	if !events.AnyMatches(info.Config.Subjects, probe) {
		return fmt.Errorf("notifier: stream %s listens on %q, which does not cover %q", n.cfg.Stream, info.Config.Subjects, n.cfg.noticeSubjects()[0])
	}
	if info.Config.Duplicates < n.streams.DuplicateWindow {
		n.log.Warn().Dur("stream_window", info.Config.Duplicates).Dur("configured_window", n.streams.DuplicateWindow).
			Msg("notice stream de-duplicates over a shorter window than configured")
	}
	return nil
}

func (n *Notifier) bind(cpKV, leaseKV jetstream.KeyValue) {
	n.bindMu.Lock()
	defer n.bindMu.Unlock()
	if n.isBound {
		return
	}
	key := kvKeyForNamespace(n.data.Database, n.data.Collection)
	for _, s := range n.slots {
		s.checkpoints = newCheckpointStore(cpKV, s.part.kvKey(key), n.data.Database, n.data.Collection)
		s.lease = lease.New(leaseKV, s.part.kvKey(key), n.cfg.InstanceID, n.cfg.LeaseTTL)
	}
	if len(n.slots) > 1 {
		n.seats = newSeats(leaseKV, key, len(n.slots), n.cfg.InstanceID, n.cfg.LeaseTTL)
	}
	n.isBound = true
}

func (n *Notifier) bound() bool {
	n.bindMu.Lock()
	defer n.bindMu.Unlock()
	return n.isBound
}

// bindExisting looks up provisioned buckets (Run without Provision). Each
// lookup is bounded: Run retries it, and one whose reply was lost must not
// wait for a far deadline of Run's context.
func (n *Notifier) bindExisting(ctx context.Context) error {
	var cpKV, leaseKV jetstream.KeyValue
	err := n.bounded(ctx, func(ctx context.Context) (err error) {
		cpKV, err = n.js.KeyValue(ctx, n.cfg.CheckpointBucket)
		return err
	})
	if err != nil {
		return fmt.Errorf("checkpoint bucket %s: %w", n.cfg.CheckpointBucket, err)
	}
	err = n.bounded(ctx, func(ctx context.Context) (err error) {
		leaseKV, err = n.js.KeyValue(ctx, n.cfg.LeaseBucket)
		return err
	})
	if err != nil {
		return fmt.Errorf("lease bucket %s: %w", n.cfg.LeaseBucket, err)
	}
	n.bind(cpKV, leaseKV)
	return nil
}

// ensurePreImages enables changeStreamPreAndPostImages when configured, at
// provisioning and at the start of each leadership term until it works. A
// refusal (old server, missing privilege, no collection yet) is logged once:
// deletes then name only the document.
//
// The command is bounded like a feed operation: the client sets no
// Timeout, so under a context without a deadline (Provision's at startup)
// the driver would wait for a lost reply indefinitely.
func (n *Notifier) ensurePreImages(ctx context.Context) {
	if !n.cfg.PreAndPostImages || n.preImagesOK.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.feedOpTimeout())
	defer cancel()
	err := n.db.RunCommand(ctx, bson.D{
		{Key: "collMod", Value: n.data.Collection},
		{Key: "changeStreamPreAndPostImages", Value: bson.D{{Key: "enabled", Value: true}}},
	}).Err()
	if err != nil {
		if n.preImagesWarned.CompareAndSwap(false, true) {
			n.log.Warn().Err(err).Int("code", outage.FirstCode(err)).
				Msg("could not enable changeStreamPreAndPostImages (MongoDB 6.0+): deletes name only the document id until it works")
		}
		return
	}
	n.preImagesOK.Store(true)
	n.log.Info().Msg("changeStreamPreAndPostImages enabled on the collection")
}

// restoreProvisioning looks for the notice stream and both buckets and, in
// create mode, provisions again whatever is gone: deleted by someone, or
// lost with a server restarted on an empty store. Without it the lease
// would fail with "no response from stream" forever. The checkpoint goes
// with its bucket, so the next term starts with a flush-all
// (no_checkpoint). In verify mode it returns ErrNotProvisioned naming what
// is missing, for /readyz. An error reaching JetStream is returned as is.
func (n *Notifier) restoreProvisioning(ctx context.Context) error {
	var missing []string
	if _, err := n.js.Stream(ctx, n.cfg.Stream); errors.Is(err, jetstream.ErrStreamNotFound) {
		missing = append(missing, "stream "+n.cfg.Stream)
	} else if err != nil {
		return err
	}
	for _, bucket := range []string{n.cfg.CheckpointBucket, n.cfg.LeaseBucket} {
		if _, err := n.js.KeyValue(ctx, bucket); errors.Is(err, jetstream.ErrBucketNotFound) {
			missing = append(missing, "bucket "+bucket)
		} else if err != nil {
			return err
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if n.streams.Mode != provision.Create {
		return fmt.Errorf("notifier: %w: %s do not exist (PROVISION=verify creates nothing)", ErrNotProvisioned, strings.Join(missing, ", "))
	}
	n.log.Warn().Strs("missing", missing).Msg("the notifier's JetStream resources are gone (deleted, or NATS restarted " +
		"with an empty store): provisioning them again; the leader starts from now after a flush-all")
	err := n.Provision(ctx)
	if err == nil {
		n.reprovisions.Add(1)
	}
	return err
}

// restoreProvisioningBounded is restoreProvisioning within one feed
// operation's time.
func (n *Notifier) restoreProvisioningBounded(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.feedOpTimeout())
	defer cancel()
	return n.restoreProvisioning(ctx)
}

// bounded runs one JetStream call under ctx bounded by requestTimeout.
func (n *Notifier) bounded(ctx context.Context, call func(context.Context) error) error {
	ctx, cancel := n.request(ctx)
	defer cancel()
	return call(ctx)
}

// restoreAfterPublishFailure is restoreProvisioningBounded when JetStream
// can be reached at all: a publish that failed because NATS is down says
// nothing about the stream.
func (n *Notifier) restoreAfterPublishFailure(ctx context.Context) error {
	if !n.js.Conn().IsConnected() {
		return nil
	}
	return n.restoreProvisioningBounded(ctx)
}
