package notify

import (
	"context"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/internal/lease"
	"github.com/customdata-worker/customdata-worker/internal/retry"
)

// stepDownRebalance labels stepdowns_total for a partition handed to
// another replica because this one led more than its share.
const stepDownRebalance = "rebalance"

// seats count the replicas of one partitioned layout, including those
// that lead nothing (which the partition leases cannot show): each healthy
// replica holds one seat, a lease key <base>.of<N>.seat<k> (k below N) in
// the lease bucket, taken with Create, renewed by revision and aged out by
// the bucket's TTL like a partition lease. Healthy: no partition stepped
// down (healthyForSeat) and MongoDB answers a ping (mongoAnswers). Keys are read one by one
// (direct gets), as a worker's NATS user may not list the bucket
// (deploy/nats/nats.conf). At most N seats: beyond N replicas every share
// is one partition anyway.
type seats struct {
	keys []*lease.Lease
	held int // index into keys, -1 when none
}

func newSeats(kv jetstream.KeyValue, base string, count int, instance string, ttl time.Duration) *seats {
	s := &seats{held: -1}
	for k := range count {
		key := base + ".of" + strconv.Itoa(count) + ".seat" + strconv.Itoa(k)
		s.keys = append(s.keys, lease.New(kv, key, instance, ttl))
	}
	return s
}

// refresh keeps this replica's seat (renewing it, or taking the first free
// one) while healthy, gives it up while not, and returns how many seats
// are held, this replica's included. A replica without a seat (all taken,
// or unhealthy) counts the others only.
func (st *seats) refresh(ctx context.Context, healthy bool) (int, error) {
	if st.held >= 0 {
		if !healthy {
			_ = st.keys[st.held].Release(ctx)
			st.held = -1
		} else if err := st.keys[st.held].Renew(ctx); err != nil {
			st.held = -1 // lost (aged out while we were slow): take one again
		}
	}
	replicas := 0
	for k, key := range st.keys {
		if k == st.held {
			replicas++
			continue
		}
		if healthy && st.held < 0 {
			ok, err := key.TryAcquire(ctx)
			if err != nil {
				return 0, err
			}
			if ok {
				st.held = k
				replicas++
				continue
			}
			replicas++ // someone else's
			continue
		}
		free, err := key.Free(ctx)
		if err != nil {
			return 0, err
		}
		if !free {
			replicas++
		}
	}
	return replicas, nil
}

// release gives the seat up on the way out, bounded in time: the others
// then count one replica fewer at once instead of after a TTL.
func (st *seats) release(ctx context.Context) {
	if st.held < 0 {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = st.keys[st.held].Release(rctx)
	st.held = -1
}

// fairShare is the most partitions one of replicas should lead: count
// spread evenly, rounded up.
func fairShare(count, replicas int) int {
	replicas = max(1, replicas)
	return (count + replicas - 1) / replicas
}

// rebalance runs beside the partitions' competitors of a partitioned
// notifier. Every third of a lease TTL it keeps this replica's seat and
// counts the replicas; when this replica leads more than its fair share,
// the replica count has not changed since the last look, and its last
// handoff is two TTLs old, it hands the excess over: each such term ends
// with a last checkpoint and gives its lease up, and this replica keeps
// away from it for a TTL, so a replica leading fewer takes it over and
// resumes from the checkpoint (no flush-all). Without it, a replica that
// starts while another leads every partition (after a rolling restart)
// would stand by for all of them for good.
func (n *Notifier) rebalance(ctx context.Context, st *seats) {
	defer st.release(ctx)
	interval := n.cfg.LeaseTTL / 3
	count := len(n.slots)
	prev := 0
	var lastHandoff time.Time
	errLogged := false
	for retry.Sleep(ctx, interval-interval/10+time.Duration(rand.Int64N(int64(interval/5)+1))) {
		healthy := n.healthyForSeat() && n.mongoAnswers(ctx, interval/2)
		rctx, cancel := context.WithTimeout(ctx, interval)
		replicas, err := st.refresh(rctx, healthy)
		cancel()
		if err != nil {
			if !errLogged && ctx.Err() == nil {
				n.log.Warn().Err(err).Msg("cannot count the replicas sharing the partitions; not rebalancing until it can")
				errLogged = true
			}
			prev = 0
			continue
		}
		errLogged = false
		stable := replicas == prev
		prev = replicas
		share := fairShare(count, replicas)
		if !stable || n.leading() <= share || time.Since(lastHandoff) < 2*n.cfg.LeaseTTL {
			continue
		}
		leading := n.leading()
		for _, s := range n.handoffCandidates(leading - share) {
			select {
			case s.handoff <- struct{}{}:
				lastHandoff = time.Now()
				s.log.Info().Int("leading", leading).Int("replicas", replicas).Int("share", share).
					Msg("leading more partitions than this replica's share: handing this one to another replica")
			default:
			}
		}
	}
}

// healthyForSeat: a replica whose change feed stepped down in any
// partition gives its seat up, so the others do not hand partitions to it.
func (n *Notifier) healthyForSeat() bool {
	for _, s := range n.slots {
		if s.health.isSteppedDown() {
			return false
		}
	}
	return true
}

// mongoAnswers: a replica whose MongoDB does not answer a ping gives its
// seat up too. It has not stepped down (it may lead nothing, so no change
// stream of its own stalled), but a partition handed to it would hold the
// lease and heartbeat while announcing nothing until its stream stalled.
// The ping has its own time limit, so the seat can still be given up.
func (n *Notifier) mongoAnswers(ctx context.Context, timeout time.Duration) bool {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return n.coll.Database().RunCommand(pctx, bson.D{{Key: "ping", Value: 1}}).Err() == nil
}

// handoffCandidates are the k led partitions with the highest indexes:
// any would do, and one rule keeps successive rounds from picking at
// random. The whole excess goes at once: the others take each within
// about a TTL (a poll plus their spread delay), inside the hold-off, so
// 64 partitions rebalance in a few TTLs rather than two TTLs apiece.
func (n *Notifier) handoffCandidates(k int) []*slot {
	var out []*slot
	for i := len(n.slots) - 1; i >= 0 && len(out) < k; i-- {
		if n.slots[i].leader.Load() {
			out = append(out, n.slots[i])
		}
	}
	return out
}

// handOff ends a term handed to another replica: the term has written its
// last checkpoint; the lease is given up and this replica keeps away from
// the partition for a TTL (two if the release failed and our value may
// live on), long enough for a standby polling every TTL/3 to win it.
func (n *Notifier) handOff(ctx context.Context, s *slot) time.Duration {
	n.metrics.steppedDown(s.part, stepDownRebalance)
	holdOff := n.cfg.LeaseTTL + time.Duration(rand.Int64N(int64(n.cfg.LeaseTTL/5)+1))
	if err := n.releaseLease(ctx, s); err != nil {
		holdOff += n.cfg.LeaseTTL
		s.log.Debug().Err(err).Msg("lease release failed; it expires by itself")
	}
	s.log.Info().Dur("hold_off", holdOff).Msg("handed the partition over after a last checkpoint: stopped leading it")
	return holdOff
}
