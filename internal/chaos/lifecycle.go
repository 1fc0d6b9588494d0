package chaos

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
)

// The worker applies one user's events in stream order only while they are
// not in flight at once on two replicas (README, Delivery semantics,
// Ordering): two replicas' batches run concurrently, a redelivery goes to
// whichever replica pulls next, and a replica paused past ACK_WAIT still
// applies the batch it held when it resumes. So the lifecycle workload
// publishes a user's next CREATE or DELETE only once the previous ones are
// settled: the consumer's ack floor has passed them (the worker acks after
// the write), that ack had time to reach the server's store (a nats-server
// killed within its consumer-state flush would redeliver it), and no
// paused replica that may have held them is still to resume. Within those
// rules the end state must be exactly that of a sequential replay.
const (
	// ackPersisted: the consumer store writes acks within 100 ms
	// (nats-server's consumer flush loop); a kill after this keeps them.
	ackPersisted = 500 * time.Millisecond
	// afterResume: a replica resumed from SIGSTOP finishes the batch it
	// held (its stale writes) well within this.
	afterResume = 5 * time.Second
	// afterWipe: events in flight when the store was wiped are gone, but a
	// replica may still be applying them, its writes retried in place
	// with backoff capped at 10 s after a MongoDB outage.
	afterWipe = 12 * time.Second
	// lastSeqDelay: an abandoned publish that the server did receive is
	// stored by then, so the stream's last sequence covers it.
	lastSeqDelay = time.Second
)

// faultClock is what the harness knows of the faults that bear on event
// order and loss: nats-server generations (a kill starts a new one), store
// epochs (a lone server's wipe starts a new one), paused replicas, and the
// ack floors of the auth consumer read in each epoch.
//
// Both counters move once the killed server is gone and before its
// successor starts: a publish acknowledged, or an ack floor read, with the
// same epoch (generation) before and after was answered by that epoch's
// server (generation's), never by the one before or after.
type faultClock struct {
	mu       sync.Mutex
	gen      int       // incremented after every nats-server kill
	epoch    int       // incremented after every kill that wipes a lone server's store
	upAt     time.Time // when the current epoch's server accepted connections
	pausing  int       // replicas stopped right now
	pauseEnd time.Time // when the last pause ended
	groups   map[string]*lifeGroup
	// maxFloor is, by epoch, the highest ack floor read from that epoch's
	// server: every event at or below it was applied (the worker acks
	// after its writes), even if that store was wiped later.
	maxFloor map[int]uint64
}

func newFaultClock() *faultClock {
	return &faultClock{groups: map[string]*lifeGroup{}, maxFloor: map[int]uint64{}}
}

// natsDown is called once a killed nats-server is gone, before it is
// started again; wipe: its store was deleted (a lone server's).
func (c *faultClock) natsDown(wipe bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if wipe {
		c.epoch++
		c.upAt = time.Time{}
	}
}

// natsUp is called once a restarted server accepts connections.
func (c *faultClock) natsUp() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.upAt.IsZero() {
		c.upAt = time.Now()
	}
}

// ackPos is where JetStream stored an acknowledged event: the epoch of the
// server that acknowledged it and the stream sequence it gave.
type ackPos struct {
	epoch int // straddled: a wipe came while the publish was under way
	seq   uint64
}

// straddled is the epoch of a publish during which a lone server's store
// was wiped: the acknowledgement may be either store's.
const straddled = -1

// stamped runs publish and says which epoch's server acknowledged it.
func (c *faultClock) stamped(publish func() (*jetstream.PubAck, error)) (*jetstream.PubAck, ackPos, error) {
	_, epoch0 := c.now()
	ack, err := publish()
	if err != nil {
		return nil, ackPos{}, err
	}
	pos := ackPos{epoch: epoch0, seq: ack.Sequence}
	if _, epoch1 := c.now(); epoch1 != epoch0 {
		pos.epoch = straddled
	}
	return ack, pos, nil
}

// applied reports whether an event acknowledged at p took effect for sure
// once the run drained the final epoch's stream: it is in that stream, or
// an ack floor read in its own epoch passed it before that store was
// wiped. Otherwise the wipe may have taken it unconsumed.
func (c *faultClock) applied(p ackPos, finalEpoch int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return p.epoch == finalEpoch || (p.epoch != straddled && p.seq <= c.maxFloor[p.epoch])
}

func (c *faultClock) paused() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pausing++
}

func (c *faultClock) resumed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pausing--
	c.pauseEnd = time.Now()
}

func (c *faultClock) now() (gen, epoch int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen, c.epoch
}

// observe records an ack floor read while the server generation stayed
// gen: every open group and event at or below it, in its epoch, is
// settled.
func (c *faultClock) observe(gen, epoch int, floor uint64, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	c.maxFloor[epoch] = max(c.maxFloor[epoch], floor)
	for _, g := range c.groups {
		for _, ev := range g.events {
			if ev.acked && ev.epoch == epoch && ev.seq <= floor {
				ev.settled = true
			}
		}
		if g.epoch == epoch && g.need > 0 && floor >= g.need && (g.settledAt.IsZero() || g.settledGen != gen) {
			g.settledGen, g.settledAt = gen, at
		}
	}
}

// lifeEvent is one CREATE or DELETE as published.
type lifeEvent struct {
	op events.Operation
	at time.Time // event time: createdAt when it inserts
	// acked: JetStream acknowledged it in epoch, at seq. Not acked: the
	// publish was abandoned or straddled a wipe; it may or may not have
	// been stored (and applied).
	acked bool
	epoch int
	seq   uint64
	// settled: the ack floor passed it in its epoch, so it was applied
	// even if that epoch's store was wiped later.
	settled bool
}

// lifeGroup is the events of one user published back to back (an event,
// its copies); the user's next group waits until this one is settled.
type lifeGroup struct {
	pubAt  time.Time
	epoch  int    // the epoch all acks came from; -1 if a wipe came between
	need   uint64 // ack floor that settles the group (0 while unknown)
	events []*lifeEvent
	// lastFrom: an abandoned publish; need is the stream's last sequence,
	// read after lastFrom.
	lastFrom   time.Time
	settledGen int
	settledAt  time.Time
}

// ready reports whether the user's next group may be published. c.mu held.
func (c *faultClock) readyLocked(g *lifeGroup, now time.Time) bool {
	if g == nil {
		return true
	}
	if c.pausing > 0 || (!c.pauseEnd.Before(g.pubAt) && now.Before(c.pauseEnd.Add(afterResume))) {
		return false
	}
	if g.epoch != c.epoch {
		return !c.upAt.IsZero() && now.After(c.upAt.Add(afterWipe))
	}
	return g.need > 0 && g.settledGen == c.gen && !g.settledAt.IsZero() && now.Sub(g.settledAt) >= ackPersisted
}

// lifecycle publishes CREATE and DELETE events for its own users, one
// group at a time per user, and keeps every published event for the
// replay at the end.
type lifecycle struct {
	clock *faultClock
	pub   *events.Publisher   // on a connection that buffers nothing while reconnecting
	js    jetstream.JetStream // the harness's, to read the stream's last sequence (no producer may)
	rng   *rand.Rand
	users []string
	next  int
	led   *lifeLedger
}

// lifeLedger holds every lifecycle event by user, in publish order.
type lifeLedger struct {
	mu      sync.Mutex
	byUser  map[string][]*lifeEvent
	creates int64
	deletes int64
	unknown int64
}

func newLifeLedger() *lifeLedger { return &lifeLedger{byUser: map[string][]*lifeEvent{}} }

func (l *lifeLedger) add(user string, ev *lifeEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.byUser[user] = append(l.byUser[user], ev)
	switch {
	case !ev.acked:
		l.unknown++
	case ev.op == events.OperationCreate:
		l.creates++
	default:
		l.deletes++
	}
}

func (l *lifeLedger) counts() (creates, deletes, unknown int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.creates, l.deletes, l.unknown
}

// step publishes the next group of one ready user, if any is ready. It
// reports whether it published.
func (lc *lifecycle) step(stop, ctx context.Context) bool {
	user := lc.pickReady(ctx)
	if user == "" {
		return false
	}
	op := events.OperationCreate
	if lc.rng.IntN(2) == 0 {
		op = events.OperationDelete
	}
	ev := events.AuthEvent{
		OperationType: op, Providers: []string{providers[lc.rng.IntN(len(providers))]}, User: events.User{ID: user},
		Time: time.Now().Add(-time.Duration(lc.rng.Int64N(int64(time.Hour)))).Truncate(time.Millisecond).UTC(),
		ID:   events.NewEventID(),
	}
	g := &lifeGroup{pubAt: time.Now()}
	_, g.epoch = lc.clock.now()
	if lc.rng.IntN(10) == 0 {
		lc.publishOnce(ctx, user, g, ev)
	} else if lc.publishAcked(ctx, user, g, ev) && stop.Err() == nil {
		switch lc.rng.IntN(10) {
		case 0: // the same event again (same id): stored once
			lc.publishAcked(ctx, user, g, ev)
		case 1: // a copy with a new id: applied again, harmlessly
			again := ev
			again.ID = events.NewEventID()
			lc.publishAcked(ctx, user, g, again)
		}
	}
	lc.clock.mu.Lock()
	lc.clock.groups[user] = g
	lc.clock.mu.Unlock()
	return true
}

// publishOnce is a producer that gives up after one try, and soon (1 to 4
// ms: often before the ack is back): unless it is acknowledged, the event
// may or may not have been stored. The group is then settled by the
// stream's last sequence, read a little later.
func (lc *lifecycle) publishOnce(ctx context.Context, user string, g *lifeGroup, ev events.AuthEvent) {
	_, epoch0 := lc.clock.now()
	actx, cancel := context.WithTimeout(ctx, time.Duration(1+lc.rng.IntN(4))*time.Millisecond)
	ack, err := lc.pub.Publish(actx, ev)
	cancel()
	_, epoch1 := lc.clock.now()
	if err == nil && epoch0 == epoch1 {
		lc.record(user, g, ev, ack, epoch1)
		return
	}
	lc.unknown(user, g, ev, epoch0)
	if epoch0 == epoch1 {
		g.lastFrom = time.Now().Add(lastSeqDelay)
	}
}

// unknown records an event that may or may not have been stored.
func (lc *lifecycle) unknown(user string, g *lifeGroup, ev events.AuthEvent, epoch int) {
	e := &lifeEvent{op: ev.OperationType, at: ev.Time, epoch: epoch}
	lc.led.add(user, e)
	g.events = append(g.events, e)
	if epoch != g.epoch {
		g.epoch = -1
	}
}

// publishAcked publishes ev until acknowledged (under ctx) and records
// what the ack says; false if ctx ended first.
func (lc *lifecycle) publishAcked(ctx context.Context, user string, g *lifeGroup, ev events.AuthEvent) bool {
	_, epoch0 := lc.clock.now()
	ack, err := publishAckedUntil(ctx, lc.pub, ev)
	if err != nil {
		lc.unknown(user, g, ev, epoch0)
		return false
	}
	if _, epoch1 := lc.clock.now(); epoch0 != epoch1 {
		// A wipe came between the first try and the ack, which came from
		// either server: a try may have been stored in the lost store (and
		// applied), the acknowledged one too. Applied once or twice at
		// this point of the user's order, or not at all.
		lc.unknown(user, g, ev, epoch0)
		g.epoch = -1
		return true
	}
	lc.record(user, g, ev, ack, epoch0)
	return true
}

// record adds an acknowledged event (a duplicate ack adds nothing: the
// server stored it once).
func (lc *lifecycle) record(user string, g *lifeGroup, ev events.AuthEvent, ack *jetstream.PubAck, epoch int) {
	if ack.Duplicate {
		return
	}
	e := &lifeEvent{op: ev.OperationType, at: ev.Time, acked: true, epoch: epoch, seq: ack.Sequence}
	lc.led.add(user, e)
	g.events = append(g.events, e)
	if epoch != g.epoch {
		g.epoch = -1
	}
	g.need = max(g.need, ack.Sequence)
}

// pickReady returns the next of its users whose last group is settled,
// reading the stream's last sequence for an abandoned publish once due.
func (lc *lifecycle) pickReady(ctx context.Context) string {
	now := time.Now()
	for range lc.users {
		user := lc.users[lc.next]
		lc.next = (lc.next + 1) % len(lc.users)
		lc.clock.mu.Lock()
		g := lc.clock.groups[user]
		needLast := g != nil && g.need == 0 && !g.lastFrom.IsZero() && now.After(g.lastFrom) && g.epoch == lc.clock.epoch
		ready := lc.clock.readyLocked(g, now)
		lc.clock.mu.Unlock()
		if needLast {
			lc.readLastSeq(ctx, g)
			continue
		}
		if ready {
			return user
		}
	}
	return ""
}

// readLastSeq sets the sequence that settles an abandoned publish: the
// stream's last, read in the same epoch.
func (lc *lifecycle) readLastSeq(ctx context.Context, g *lifeGroup) {
	_, epoch0 := lc.clock.now()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := lc.js.Stream(rctx, "AUTH_EVENTS")
	if err != nil {
		return
	}
	info, err := s.Info(rctx)
	if err != nil {
		return
	}
	_, epoch1 := lc.clock.now()
	lc.clock.mu.Lock()
	defer lc.clock.mu.Unlock()
	if epoch0 == epoch1 && g.epoch == epoch1 {
		g.need = max(info.State.LastSeq, 1)
	}
}

// publishAckedUntil is publishUntilAcked returning the ack.
func publishAckedUntil(ctx context.Context, pub *events.Publisher, ev events.AuthEvent) (*jetstream.PubAck, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		ack, err := pub.Publish(actx, ev)
		cancel()
		if err == nil {
			return ack, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// watchAckFloor reads the auth consumer's ack floor every 200 ms until ctx
// ends, keeping only readings during which no nats-server was killed.
func (h *harness) watchAckFloor(ctx context.Context, clock *faultClock) {
	for ctx.Err() == nil {
		gen0, epoch0 := clock.now()
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := h.js.Consumer(rctx, "AUTH_EVENTS", "customdata-worker")
		if err == nil {
			var info *jetstream.ConsumerInfo
			// The acks it reflects were processed before now: their
			// persistence is counted from here.
			if info, err = c.Info(rctx); err == nil {
				if gen1, epoch1 := clock.now(); gen0 == gen1 && epoch0 == epoch1 {
					clock.observe(gen0, epoch0, info.AckFloor.Stream, time.Now())
				}
			}
		}
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}
