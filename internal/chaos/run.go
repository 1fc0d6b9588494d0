package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/mongostandin"
	"github.com/customdata-worker/customdata-worker/issuer"
)

// Config is one chaos run.
type Config struct {
	WorkerBin     string        // built customdata-worker binary
	IssuerBin     string        // built reference-issuer binary
	NATSServerBin string        // nats-server binary
	Dir           string        // logs and the JetStream store
	Duration      time.Duration // how long faults are injected
	Seed          uint64        // draws every fault and moment; printed
	Users         int           // users the workload logs in (default 200)
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
	// MongoURI, when set, is a real MongoDB (no outage fault: the harness
	// cannot stop it); else a private stand-in is started.
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

// harness holds the processes and clients of one run.
type harness struct {
	cfg     Config
	logf    func(string, ...any)
	nats    *natsCluster
	workers []*workerProcess
	issuer  *issuerProcess
	standin *mongostandin.StandIn
	uri     string
	nc      *nats.Conn
	js      jetstream.JetStream
	client  *mongo.Client
	coll    *mongo.Collection
}

func (h *harness) canCutMongo() bool { return h.standin != nil }

// leader is the replica whose metrics say it leads, if any.
func (h *harness) leader(ctx context.Context) *workerProcess {
	for _, w := range h.workers {
		if w.leads(ctx) {
			return w
		}
	}
	return nil
}

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
	sum := Summary{Seed: cfg.Seed, Duration: cfg.Duration, Faults: map[fault]int{}}
	cfg.Logf("chaos: seed %d (CHAOS_SEED=%d replays it), %s of faults, %d users, %d replicas, %d nats-server node(s)", cfg.Seed, cfg.Seed, cfg.Duration, cfg.Users, cfg.Replicas, max(cfg.NATSNodes, 1))
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
	pub, err := events.NewPublisher(h.js)
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
	lifeNC, err := nats.Connect(h.nats.url, nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond), nats.ReconnectBufSize(-1))
	if err != nil {
		return sum, err
	}
	defer lifeNC.Close()
	lifeJS, err := jetstream.New(lifeNC)
	if err != nil {
		return sum, err
	}
	lifePub, err := events.NewPublisher(lifeJS)
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
	chaosCtx, stopChaos := context.WithTimeout(ctx, cfg.Duration)
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
		lc := &lifecycle{clock: clock, pub: lifePub, js: lifeJS, rng: rand.New(rand.NewPCG(seed, 6)), users: own, led: lifeLed}
		wg.Go(func() { runLogins(chaosCtx, ctx, seed, pub, users, led, lc) })
	}
	wg.Go(func() {
		runHostile(chaosCtx, ctx, cfg.Seed, h.js, events.DefaultAuthPrefix, keep, led, 500*time.Millisecond)
	})
	written := append(append([]string(nil), keep...), sessUsers...)
	wg.Go(func() { runOutsideWrites(chaosCtx, cfg.Seed, h.coll, written, ow, notices) })
	wg.Go(func() { sess.run(chaosCtx, cfg.Seed) })
	wg.Go(func() { runReads(chaosCtx, cfg.Seed, cache, users, ow) })
	in := &injector{rng: newRand(cfg.Seed), h: h, counts: sum.Faults, every: cfg.FaultEvery,
		outage: min(20*time.Second, max(cfg.FaultEvery, 4*time.Second)), ackWait: ackWait, wiped: led.wiped, clock: clock}
	wg.Go(func() { in.run(chaosCtx) })
	wg.Wait()
	stopChaos()
	stopWatch()
	watch.Wait()
	cfg.Logf("chaos: faults over; settling")

	if err := h.restoreAll(ctx); err != nil {
		return sum, err
	}
	var errs []error
	check := func(err error) {
		if err != nil {
			cfg.Logf("chaos: FAIL %v", err)
			errs = append(errs, err)
		}
	}
	check(h.quiesce(ctx, 3*time.Minute))
	check(h.verifyLogins(ctx, led))
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
	check(h.verifyDeadLetters(ctx, led))
	check(h.verifyIssuer(ctx, cache, ow.allNames()))
	check(h.verifyOwnerChanges(ctx, ow, notices))
	check(h.verifyRefreshes(ctx, sess))
	check(h.verifyNoPanics())

	sum.Logins = led.logins.Load()
	sum.Duplicates = led.duplicates.Load()
	sum.Creates, sum.Deletes, sum.Unknown = lifeLed.counts()
	sum.Hostile = led.hostileTotal()
	ow.mu.Lock()
	sum.OutsideWrites = ow.count
	ow.mu.Unlock()
	moves, failed := ow.ownerChangeCounts()
	sum.OwnerChanges = moves - failed
	sum.UserNotices, sum.FlushAlls = notices.counts()
	sum.Redeliveries = h.redeliveries(ctx)
	sum.Refreshes, sum.RefreshesFailed = sess.counts()
	sum.OK = len(errs) == 0
	return sum, errors.Join(errs...)
}

func (h *harness) start(ctx context.Context) error {
	cfg := h.cfg
	h.uri = cfg.MongoURI
	if h.uri == "" {
		s, err := mongostandin.Start(ctx)
		if err != nil {
			return fmt.Errorf("start the MongoDB stand-in: %w", err)
		}
		h.standin, h.uri = s, s.URI()
	}
	client, err := mongo.Connect(options.Client().ApplyURI(h.uri).SetTimeout(5 * time.Second))
	if err != nil {
		return err
	}
	h.client = client
	h.coll = client.Database(database).Collection(collection)
	_ = h.coll.Database().Drop(ctx)
	n, err := newNATSCluster(cfg.NATSServerBin, cfg.Dir, cfg.NATSNodes)
	if err != nil {
		return err
	}
	h.nats = n
	if err := n.startAll(ctx); err != nil {
		return err
	}
	nc, err := nats.Connect(n.url, nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))
	if err != nil {
		return err
	}
	h.nc = nc
	if h.js, err = jetstream.New(nc); err != nil {
		return err
	}
	if n.clustered() {
		// The replicas start once every node takes part in JetStream: an
		// R3 stream created before is refused ("no suitable peers").
		if err := h.waitForPeers(ctx, time.Minute); err != nil {
			return err
		}
	}
	for i := range cfg.Replicas {
		port, err := freePort()
		if err != nil {
			return err
		}
		name := "worker-" + strconv.Itoa(i+1)
		env := append(os.Environ(),
			"CUSTOMDATA_NATS_URL="+n.url,
			"CUSTOMDATA_MONGODB_URI="+h.uri,
			"CUSTOMDATA_MONGODB_DATABASE="+database,
			"CUSTOMDATA_MONGODB_COLLECTION="+collection,
			"CUSTOMDATA_USER_ID_FIELD="+userIDField,
			"CUSTOMDATA_ACK_WAIT="+ackWait.String(),
			"CUSTOMDATA_LEASE_TTL="+leaseTTL.String(),
			"CUSTOMDATA_HTTP_ADDR=127.0.0.1:"+strconv.Itoa(port),
			"CUSTOMDATA_LOG_FORMAT=json",
			"CUSTOMDATA_STREAM_REPLICAS="+strconv.Itoa(len(n.nodes)),
		)
		w := &workerProcess{process: newProcess(name, cfg.WorkerBin, nil, env, cfg.Dir),
			metricsURL: "http://127.0.0.1:" + strconv.Itoa(port) + "/metrics"}
		if err := w.start(); err != nil {
			return err
		}
		h.workers = append(h.workers, w)
	}
	// The replicas provision the streams; wait for them.
	deadline := time.Now().Add(time.Minute)
	for {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err1 := h.js.Stream(sctx, "AUTH_EVENTS")
		_, err2 := h.js.Stream(sctx, "CUSTOMDATA_NOTICES")
		cancel()
		if err1 == nil && err2 == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the replicas did not provision their streams within a minute: %w (logs in %s)", errors.Join(err1, err2), cfg.Dir)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// restoreAll brings every process back: MongoDB listening, NATS up, every
// replica running and not stopped.
func (h *harness) restoreAll(ctx context.Context) error {
	if h.standin != nil {
		_ = h.standin.Start() // answers "listening" whether it was stopped or not
	}
	for _, n := range h.nats.nodes {
		if n.exited() {
			if err := n.startAndWait(ctx); err != nil {
				return err
			}
		}
	}
	for _, w := range h.workers {
		_ = w.signal(sigCONT)
		if w.exited() {
			h.logf("chaos: %s had exited on its own; restarting (see %s)", w.name, w.log)
			if err := w.start(); err != nil {
				return err
			}
		}
	}
	if h.issuer != nil && h.issuer.exited() {
		h.logf("chaos: the reference issuer had exited on its own; restarting (see %s)", h.issuer.log)
		return h.issuer.start()
	}
	return nil
}

func (h *harness) close() {
	if h.issuer != nil {
		h.issuer.stop(10 * time.Second)
	}
	for _, w := range h.workers {
		w.stop(10 * time.Second)
	}
	if h.nc != nil {
		h.nc.Close()
	}
	if h.nats != nil {
		h.nats.stop(5 * time.Second)
	}
	if h.client != nil {
		_ = h.client.Disconnect(context.Background())
	}
	if h.standin != nil {
		_ = h.standin.Close()
	}
}

// waitCount waits until the collection holds n documents.
func (h *harness) waitCount(ctx context.Context, n int64, within time.Duration) error {
	deadline := time.Now().Add(within)
	var got int64
	for time.Now().Before(deadline) {
		c, err := h.coll.CountDocuments(ctx, bson.D{})
		if err == nil {
			if got = c; got == n {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%d documents after %s, want %d", got, within, n)
}

// startIssuer runs an issuer cache that follows notices on its own NATS
// connection, as an issuer process would.
func (h *harness) startIssuer(ctx context.Context) (*issuer.Cache, func(), error) {
	nc, err := nats.Connect(h.nats.url, nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, err
	}
	src, err := issuer.NewSource(h.client, issuer.SourceConfig{Database: database, Collection: collection, UserIDField: userIDField})
	if err != nil {
		return nil, nil, err
	}
	cache, err := issuer.NewCache(src, issuer.CacheConfig{}, issuer.WithNotices(js, issuer.NoticeConfig{}))
	if err != nil {
		return nil, nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := cache.Run(rctx); err != nil {
			h.logf("chaos: issuer cache stopped: %v", err)
		}
	}()
	stop := func() { cancel(); <-done; nc.Close() }
	for deadline := time.Now().Add(30 * time.Second); !cache.Following(); {
		if time.Now().After(deadline) {
			stop()
			return nil, nil, errors.New("the issuer did not start following notices within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cache, stop, nil
}
