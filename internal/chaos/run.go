package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
)

// Config is one chaos run.
type Config struct {
	WorkerBin     string // built customdata-worker binary
	IssuerBin     string // built reference-issuer binary
	NATSServerBin string // nats-server binary
	// NATSConf is deploy/nats/nats.conf: every process logs in as one of
	// its users, with its permissions (natsauth.go).
	NATSConf string
	Dir      string        // logs and the JetStream store
	Duration time.Duration // how long faults are injected
	Seed     uint64        // draws every fault and moment; printed
	Users    int           // users the workload logs in (default 200)
	// LifecycleUsers are users of their own that only CREATE and DELETE
	// events name while the faults run (default Users/5).
	LifecycleUsers int
	// Sessions are users logged in at the reference issuer and refreshed
	// all through the run (default 10).
	Sessions int
	Replicas int // worker replicas (default 2)
	// NATSNodes is 1 (default) for one nats-server, or the size of a
	// cluster whose streams the workers create with that many replicas.
	NATSNodes int
	// Partitions is every replica's NOTIFIER_PARTITIONS (default 1): the
	// change stream split into that many partitions, each led, checkpointed
	// and heard of (heartbeats) on its own.
	Partitions int
	// MongoURI, when set, is a real MongoDB; else a private stand-in is
	// started. Outages are cut through a proxy, which needs a URI of one
	// host without TLS (proxiedURI); for another no outage is injected.
	MongoURI string
	// FaultEvery is the mean time between faults (default Duration/10).
	FaultEvery time.Duration
	Logf       func(format string, args ...any)
}

const (
	database    = "chaos"
	collection  = "custom_user_data"
	userIDField = "userId"
	ackWait     = 4 * time.Second
	leaseTTL    = 3 * time.Second
)

func (c *Config) setDefaults() {
	if c.Users == 0 {
		c.Users = 200
	}
	if c.LifecycleUsers == 0 {
		c.LifecycleUsers = max(c.Users/5, 2)
	}
	if c.Sessions == 0 {
		c.Sessions = 10
	}
	if c.Partitions == 0 {
		c.Partitions = 1
	}
	if c.Replicas == 0 {
		c.Replicas = 2
	}
	if c.FaultEvery == 0 {
		c.FaultEvery = max(c.Duration/10, 3*time.Second)
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// Run starts everything, runs the workload under faults for cfg.Duration,
// settles and verifies. The error is non-nil when anything was lost or
// wrong; the Summary says what was counted either way.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	cfg.setDefaults()
	h := &harness{cfg: cfg, logf: cfg.Logf}
	sum := Summary{Seed: cfg.Seed, Duration: cfg.Duration, Partitions: cfg.Partitions, Faults: map[fault]int{}}
	cfg.Logf("chaos: seed %d (CHAOS_SEED=%d replays it), %s of faults, %d users, %d replicas, %d nats-server node(s), %d notifier partition(s)", cfg.Seed, cfg.Seed, cfg.Duration, cfg.Users, cfg.Replicas, max(cfg.NATSNodes, 1), cfg.Partitions)
	defer h.close()
	if err := h.start(ctx); err != nil {
		return sum, err
	}
	users := make([]string, cfg.Users)
	for i := range users {
		users[i] = fmt.Sprintf("user-%04d", i)
	}
	sessUsers := make([]string, cfg.Sessions)
	for i := range sessUsers {
		sessUsers[i] = fmt.Sprintf("sess-%02d", i)
	}
	// The workload's producers log in as nats.conf's auth service and
	// sign every event with the key the replicas trust.
	prodNC, err := h.auth.connect(h.nats.url, producerUser)
	if err != nil {
		return sum, err
	}
	defer prodNC.Close()
	prodJS, err := jetstream.New(prodNC)
	if err != nil {
		return sum, err
	}
	pub, err := events.NewPublisher(prodJS, events.WithSigner(h.keys.producer))
	if err != nil {
		return sum, err
	}
	led := newLedger()
	clock, lifeLed := newFaultClock(), newLifeLedger()
	lifeUsers := make([]string, cfg.LifecycleUsers)
	for i := range lifeUsers {
		lifeUsers[i] = fmt.Sprintf("life-%03d", i)
	}
	// Lifecycle events go through a connection that buffers nothing while
	// it reconnects: an abandoned publish is never sent long after.
	lifeNC, err := h.auth.connect(h.nats.url, producerUser, nats.ReconnectBufSize(-1))
	if err != nil {
		return sum, err
	}
	defer lifeNC.Close()
	lifeJS, err := jetstream.New(lifeNC)
	if err != nil {
		return sum, err
	}
	lifePub, err := events.NewPublisher(lifeJS, events.WithSigner(h.keys.producer))
	if err != nil {
		return sum, err
	}

	// Phase 0: every user signs up; the documents exist before logins.
	for i, u := range append(append([]string(nil), users...), sessUsers...) {
		ev := events.AuthEvent{OperationType: events.OperationCreate, Providers: []string{providers[i%len(providers)]},
			User: events.User{ID: u}, Time: time.Now().UTC().Truncate(time.Millisecond)}
		if err := publishUntilAcked(ctx, pub, ev); err != nil {
			return sum, err
		}
	}
	if err := h.waitCount(ctx, int64(len(users)+len(sessUsers)), 2*time.Minute); err != nil {
		return sum, fmt.Errorf("CREATE phase: %w", err)
	}

	// The issuer follows notices for the whole run, and keeps reading.
	cache, stopIssuer, err := h.startIssuer(ctx)
	if err != nil {
		return sum, err
	}
	defer stopIssuer()
	notices, stopNotices, err := h.recordNotices(ctx)
	if err != nil {
		return sum, err
	}
	defer stopNotices()
	// Opened after the notices are followed: every change it sees is
	// announced, if at all, on the part of the notice stream recorded.
	changes, stopChanges, err := h.recordChanges(ctx)
	if err != nil {
		return sum, err
	}
	defer stopChanges()
	ow := &outsideWrites{}

	// The reference issuer, as its own process: the session users log in
	// there and have their tokens refreshed all through the run.
	if h.issuer, err = h.startRefIssuer(ctx); err != nil {
		return sum, err
	}
	client, err := newIssuerClient(ctx, h.issuer.base)
	if err != nil {
		return sum, err
	}
	sess := newSessions(client, sessUsers)
	if err := sess.loginAll(ctx); err != nil {
		return sum, err
	}

	// Deleted at the end; hostile events aim at the others.
	var keep, remove []string
	for i, u := range users {
		if i%10 == 0 {
			remove = append(remove, u)
		} else {
			keep = append(keep, u)
		}
	}
	// The workload runs as long as the faults do: for cfg.Duration, and
	// on until every fault kind has come (injector.run).
	chaosCtx, stopChaos := context.WithCancel(ctx)
	started := time.Now()
	watchCtx, stopWatch := context.WithCancel(ctx)
	var watch sync.WaitGroup
	watch.Go(func() { h.watchAckFloor(watchCtx, clock) })
	var wg sync.WaitGroup
	for i := range 2 {
		seed := cfg.Seed + uint64(i)*7919
		var own []string
		for j := i; j < len(lifeUsers); j += 2 {
			own = append(own, lifeUsers[j])
		}
		lc := &lifecycle{clock: clock, pub: lifePub, js: h.js, rng: rand.New(rand.NewPCG(seed, 6)), users: own, led: lifeLed}
		wg.Go(func() { runLogins(chaosCtx, ctx, seed, pub, clock, users, led, lc) })
	}
	wg.Go(func() {
		runHostile(chaosCtx, ctx, cfg.Seed, prodJS, h.keys, clock, events.DefaultAuthPrefix, keep, led, 500*time.Millisecond)
	})
	written := append(append([]string(nil), keep...), sessUsers...)
	wg.Go(func() { runOutsideWrites(chaosCtx, cfg.Seed, h.coll, written, ow, notices) })
	wg.Go(func() { sess.run(chaosCtx, cfg.Seed) })
	wg.Go(func() { runReads(chaosCtx, cfg.Seed, cache, users, ow) })
	in := &injector{rng: newRand(cfg.Seed), h: h, counts: sum.Faults, every: cfg.FaultEvery,
		outage: min(30*time.Second, max(cfg.FaultEvery, 4*time.Second)), ackWait: ackWait, clock: clock, removeAll: os.RemoveAll}
	var faultErr error
	wg.Go(func() {
		defer stopChaos()
		stop, cancelStop := context.WithTimeout(ctx, cfg.Duration)
		defer cancelStop()
		bound, cancelBound := context.WithTimeout(ctx, cfg.Duration+in.grace())
		defer cancelBound()
		faultErr = in.run(stop, bound)
	})
	wg.Wait()
	sum.Duration = time.Since(started).Round(time.Second)
	stopWatch()
	watch.Wait()
	cfg.Logf("chaos: faults over; settling")

	if err := h.restoreAll(ctx); err != nil {
		return sum, err
	}
	settled := time.Now()
	var errs []error
	check := func(err error) {
		if err != nil {
			cfg.Logf("chaos: FAIL %v", err)
			if len(errs) == 0 {
				dumpGoroutines(cfg.Dir, cfg.Logf)
			}
			errs = append(errs, err)
		}
	}
	check(faultErr)
	check(h.quiesce(ctx, 3*time.Minute))
	uncertainLogins, err := h.verifyLogins(ctx, users, led, clock)
	check(err)
	check(h.verifyLifecycle(ctx, lifeUsers, lifeLed, clock))

	// DELETE phase: a tenth of the users are deleted.
	for _, u := range remove {
		ev := events.AuthEvent{OperationType: events.OperationDelete, Providers: []string{"local-userpass"},
			User: events.User{ID: u}, Time: time.Now().UTC().Truncate(time.Millisecond)}
		if err := publishUntilAcked(ctx, pub, ev); err != nil {
			return sum, err
		}
	}
	check(h.quiesce(ctx, 2*time.Minute))
	check(h.verifyMembership(ctx, keep, remove))
	// Nothing writes any more: once the stream has read up to now, it
	// has every change.
	check(changes.waitCaughtUp(ctx, time.Minute))
	stopChanges()
	sum.Changes, sum.ChangesByFlush, err = h.verifyChangesAnnounced(changes, notices)
	check(err)
	uncertainHostile, err := h.verifyDeadLetters(ctx, led, clock)
	check(err)
	// Every partition led and heard again, before the issuers are held to
	// following them.
	check(h.verifyLeadership(ctx, 30*time.Second))
	check(h.verifyHeartbeats(ctx, notices.beats, settled, 30*time.Second))
	check(h.verifyIssuer(ctx, cache, ow.allNames()))
	check(h.verifyOwnerChanges(ctx, ow, notices))
	check(h.verifyRefreshes(ctx, sess))
	check(h.verifyNoPanics())
	check(h.verifyNoViolations())

	sum.Logins = led.logins.Load()
	sum.Duplicates = led.duplicates.Load()
	sum.Creates, sum.Deletes, sum.Unknown = lifeLed.counts()
	sum.Hostile = led.hostileTotal()
	cfg.Logf("chaos: hostile events acknowledged by kind: %v", led.hostileByKind())
	sum.WipeUncertain = uncertainLogins + uncertainHostile
	ow.mu.Lock()
	sum.OutsideWrites = ow.count
	ow.mu.Unlock()
	moves, failed := ow.ownerChangeCounts()
	sum.OwnerChanges = moves - failed
	sum.UserNotices, sum.FlushAlls = notices.counts()
	sum.Redeliveries = h.redeliveries(ctx)
	sum.Refreshes, sum.RefreshesFailed = sess.counts()
	check(verifyExercised(sum))
	sum.OK = len(errs) == 0
	return sum, errors.Join(errs...)
}

// dumpGoroutines writes every goroutine of this process (the in-process
// issuer, the publishers, the checks) beside the logs when the first check
// fails: a stuck goroutine is visible only while the run is still up.
func dumpGoroutines(dir string, logf func(string, ...any)) {
	path := filepath.Join(dir, "goroutines.txt")
	f, err := os.Create(path)
	if err != nil {
		logf("chaos: goroutine dump: %v", err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("goroutine").WriteTo(f, 2); err != nil {
		logf("chaos: goroutine dump: %v", err)
		return
	}
	logf("chaos: goroutines of the harness at the first failure: %s", path)
}
