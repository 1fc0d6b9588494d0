package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/issuer"
)

const sigCONT = syscall.SIGCONT

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 4)) }

// Summary is what a run counted; String is its one-line result.
type Summary struct {
	Seed     uint64
	Duration time.Duration
	// Partitions: the notifier's partitions (printed only above 1, so a
	// run without partitions prints what it did before they existed).
	Partitions int
	Logins     int64
	Duplicates int64
	Creates    int64 // lifecycle CREATEs acknowledged
	Deletes    int64 // lifecycle DELETEs acknowledged
	Unknown    int64 // lifecycle events of unknown outcome
	Hostile    int
	// WipeUncertain: acknowledged LOGINs and hostile events a lone
	// server's wipe may have taken unconsumed (the checks accept them
	// applied or not); 0 without such a wipe.
	WipeUncertain int
	OutsideWrites int64
	OwnerChanges  int // outside writes that changed a document's userId, acknowledged
	// Changes: changes committed to the collection from the workload's
	// start (the harness's change stream); ChangesByFlush: those covered
	// only by a flush-all, not by a notice naming their document.
	Changes        int
	ChangesByFlush int
	UserNotices    int64
	FlushAlls      int64
	Redeliveries   int64
	Refreshes      int64 // token refreshes the reference issuer answered during the run
	// RefreshesFailed: refreshes refused or unanswered during the run
	// (while NATS or MongoDB was down).
	RefreshesFailed int64
	Faults          map[fault]int
	OK              bool
}

func (s Summary) String() string {
	var faults []string
	total := 0
	for _, f := range allFaults {
		faults = append(faults, fmt.Sprintf("%s=%d", f, s.Faults[f]))
		total += s.Faults[f]
	}
	result := "FAIL"
	if s.OK {
		result = "ok"
	}
	parts := ""
	if s.Partitions > 1 {
		parts = fmt.Sprintf(" partitions=%d", s.Partitions)
	}
	return fmt.Sprintf("chaos %s: seed=%d duration=%s%s logins=%d duplicates=%d creates=%d deletes=%d unknown_outcome=%d wipe_uncertain=%d hostile=%d outside_writes=%d owner_changes=%d changes=%d changes_by_flush=%d notices=%d flush_alls=%d refreshes=%d redeliveries=%d faults=%d (%s)",
		result, s.Seed, s.Duration, parts, s.Logins, s.Duplicates, s.Creates, s.Deletes, s.Unknown, s.WipeUncertain, s.Hostile, s.OutsideWrites, s.OwnerChanges, s.Changes, s.ChangesByFlush, s.UserNotices, s.FlushAlls, s.Refreshes, s.Redeliveries, total, strings.Join(faults, " "))
}

// quiesce waits until the auth consumer has nothing pending or unacked.
func (h *harness) quiesce(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		// Each request bounded: one sent while a cluster elects its
		// leaders may go unanswered for good.
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := h.js.Consumer(cctx, "AUTH_EVENTS", "customdata-worker")
		if err == nil {
			info, err := c.Info(cctx)
			if err == nil {
				if info.NumPending == 0 && info.NumAckPending == 0 {
					cancel()
					return nil
				}
				last = fmt.Sprintf("%d pending, %d awaiting ack", info.NumPending, info.NumAckPending)
			} else {
				last = err.Error()
			}
		} else {
			last = err.Error()
		}
		cancel()
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("auth events not drained within %s: %s", within, last)
}

// verifyLogins: every user's lastLogin is the newest LOGIN JetStream
// acknowledged for them, users never logged in have none. Only a LOGIN
// that a lone server's wipe may have taken unconsumed (ledger) relaxes
// this: the value may then also be such a LOGIN, newer than the newest
// certain one, never anything older or never published. It returns how
// many acknowledged LOGINs were uncertain.
func (h *harness) verifyLogins(ctx context.Context, users []string, led *ledger, clock *faultClock) (int, error) {
	got := map[string]time.Time{}
	cur, err := h.coll.Find(ctx, bson.D{{Key: userIDField, Value: bson.D{{Key: "$regex", Value: "^user-"}}}})
	if err != nil {
		return 0, fmt.Errorf("read back: %w", err)
	}
	var docs []bson.M
	if err := cur.All(ctx, &docs); err != nil {
		return 0, fmt.Errorf("read back: %w", err)
	}
	for _, d := range docs {
		u, _ := d[userIDField].(string)
		if t, ok := d["lastLogin"].(bson.DateTime); ok {
			got[u] = t.Time().UTC()
		}
	}
	_, finalEpoch := clock.now()
	want, uncertain := led.expectedLogins(clock, finalEpoch)
	format := func(t time.Time) string {
		if t.IsZero() {
			return "none"
		}
		return t.Format(time.RFC3339Nano)
	}
	var wrong []string
	for _, u := range users {
		w, g := want[u], got[u]
		if w.allows(g) {
			continue
		}
		msg := fmt.Sprintf("%s: lastLogin %s, want %s", u, format(g), format(w.newest))
		if len(w.maybe) > 0 {
			msg += fmt.Sprintf(" or one of %d newer LOGINs a wipe may have lost", len(w.maybe))
		}
		wrong = append(wrong, msg)
	}
	sort.Strings(wrong)
	if len(wrong) > 0 {
		return uncertain, fmt.Errorf("%d users' lastLogin is not their newest LOGIN, e.g. %s", len(wrong), strings.Join(wrong[:min(5, len(wrong))], "; "))
	}
	return uncertain, nil
}

// verifyMembership: the deleted users' documents are gone, every other
// user's document is there (hostile DELETEs aimed at them had no effect).
func (h *harness) verifyMembership(ctx context.Context, keep, removed []string) error {
	var errs []error
	for _, u := range removed {
		if n, err := h.coll.CountDocuments(ctx, bson.D{{Key: userIDField, Value: u}}); err != nil || n != 0 {
			errs = append(errs, fmt.Errorf("deleted user %s: %d documents (%v)", u, n, err))
		}
	}
	for _, u := range keep {
		if n, err := h.coll.CountDocuments(ctx, bson.D{{Key: userIDField, Value: u}}); err != nil || n != 1 {
			errs = append(errs, fmt.Errorf("user %s: %d documents, want 1 (%v)", u, n, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("CREATE/DELETE effects: %d wrong, e.g. %w", len(errs), errors.Join(errs[:min(5, len(errs))]...))
	}
	return nil
}

// verifyDeadLetters: every hostile event is in the dead-letter stream
// once, with its own reason, and nothing else is. After a lone server's
// wipe the stream holds only what was dead-lettered since: every hostile
// event acknowledged by the final store must be there; one acknowledged
// by a wiped store may be (it was in flight at the wipe) or not. It
// returns how many hostile events a wipe made uncertain.
func (h *harness) verifyDeadLetters(ctx context.Context, led *ledger, clock *faultClock) (int, error) {
	var uncertain int
	err := retryJS(ctx, func(ctx context.Context) (err error) {
		uncertain, err = h.deadLettersOnce(ctx, led, clock)
		return err
	})
	return uncertain, err
}

func (h *harness) deadLettersOnce(ctx context.Context, led *ledger, clock *faultClock) (int, error) {
	_, finalEpoch := clock.now()
	led.mu.Lock()
	byID := make(map[string]*hostileEvent, len(led.hostile))
	for _, ev := range led.hostile {
		byID[ev.msgID] = ev
	}
	led.mu.Unlock()
	s, err := h.js.Stream(ctx, "AUTH_EVENTS_DLQ")
	if err != nil {
		return 0, fmt.Errorf("dead-letter stream: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	var wrong []string
	seen := map[string]bool{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			return 0, fmt.Errorf("dead letter %d: %w", seq, err)
		}
		id, reason := m.Header.Get(events.HeaderDLQOriginalMsgID), m.Header.Get(events.HeaderDLQReason)
		ev := byID[id]
		switch {
		case ev == nil:
			wrong = append(wrong, fmt.Sprintf("dead letter %d (%s, reason %q) is not a hostile event", seq, id, reason))
		case seen[id]:
			wrong = append(wrong, fmt.Sprintf("dead letter %d: %s dead-lettered twice", seq, id))
		case reason != ev.reason:
			wrong = append(wrong, fmt.Sprintf("dead letter %d: %s (%s) has reason %q, want %q", seq, id, ev.kind, reason, ev.reason))
		case !strings.HasPrefix(m.Header.Get(jetstream.MsgIDHeader), "dlq-"):
			wrong = append(wrong, fmt.Sprintf("dead letter %d: %s has Nats-Msg-Id %q", seq, id, m.Header.Get(jetstream.MsgIDHeader)))
		}
		seen[id] = true
	}
	// A kind never sent would pass vacuously.
	sent := map[string]bool{}
	for _, ev := range byID {
		sent[ev.kind] = true
	}
	for _, k := range hostileKinds {
		if !sent[k.kind] {
			wrong = append(wrong, fmt.Sprintf("no hostile event of kind %s was acknowledged: the run proves nothing about it", k.kind))
		}
	}
	uncertain, missing := 0, 0
	for id, ev := range byID {
		switch {
		case ev.ack.epoch != finalEpoch:
			uncertain++
		case !seen[id]:
			missing++
			if missing <= 5 {
				wrong = append(wrong, fmt.Sprintf("%s (%s, at %s) is not in the dead-letter stream", id, ev.kind, ev.user))
			}
		}
	}
	if len(wrong) > 0 {
		sort.Strings(wrong)
		return uncertain, fmt.Errorf("dead letters (%d in the stream, %d hostile events acknowledged, %d missing): %s",
			info.State.Msgs, len(byID), missing, strings.Join(wrong[:min(8, len(wrong))], "; "))
	}
	return uncertain, nil
}

// verifyIssuer: the issuer, which cached users all along and heard of
// changes only through notices, returns every user's current document:
// every user that has one, and every outside user ever read (one whose
// document was deleted or given to another must read as having none).
// A change that went unannounced (with no flush-all after it) leaves its
// cached copy stale forever, so a short settle is enough.
func (h *harness) verifyIssuer(ctx context.Context, cache *issuer.Cache, also []string) error {
	ids, err := h.coll.Distinct(ctx, userIDField, bson.D{}).Raw()
	if err != nil {
		return fmt.Errorf("list users: %w", err)
	}
	vals, _ := ids.Values()
	seen := map[string]bool{}
	var users []string
	for _, v := range vals {
		seen[v.StringValue()] = true
		users = append(users, v.StringValue())
	}
	for _, u := range also {
		if !seen[u] {
			seen[u] = true
			users = append(users, u)
		}
	}
	// A cache that does not follow notices reads MongoDB on every Get and
	// would pass vacuously: the check counts only while it follows (and
	// so keeps what it read).
	following := func() error {
		for deadline := time.Now().Add(30 * time.Second); !cache.Following(); {
			if time.Now().After(deadline) {
				return errors.New("the issuer does not follow notices after the run (it would read MongoDB on every call, so its check proves nothing)")
			}
			time.Sleep(100 * time.Millisecond)
		}
		return nil
	}
	var stale []string
	for attempt := 0; attempt < 20; attempt++ {
		if err := following(); err != nil {
			return err
		}
		stale = stale[:0]
		for _, u := range users {
			var want bson.Raw
			err := h.coll.FindOne(ctx, bson.D{{Key: userIDField, Value: u}}).Decode(&want)
			if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
				return err
			}
			got, err := cache.Get(ctx, u)
			if err != nil {
				stale = append(stale, u+": "+err.Error())
				continue
			}
			if got.Found() != (want != nil) || (want != nil && !bytes.Equal(got.Raw(), want)) {
				stale = append(stale, u)
			}
		}
		if len(stale) == 0 && cache.Following() {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(stale) == 0 {
		return errors.New("the issuer kept losing its notice feed during the check, so its answers may have been read through")
	}
	return fmt.Errorf("the issuer returns stale data for %d of %d users after the run, e.g. %v", len(stale), len(users), stale[:min(5, len(stale))])
}

// verifyNoPanics: no process panicked (or died of a fatal error or a
// race) and none exited without the harness killing or stopping it.
func (h *harness) verifyNoPanics() error {
	var errs []error
	check := func(name string, p *process) {
		if line := p.panicked(); line != "" {
			errs = append(errs, fmt.Errorf("%s: %s (see %s)", name, line, p.log))
		}
		for _, exit := range p.exits() {
			errs = append(errs, fmt.Errorf("%s %s (see %s)", name, exit, p.log))
		}
	}
	for _, w := range h.workers {
		check(w.name, w.process)
	}
	if h.issuer != nil {
		check("reference-issuer", h.issuer.process)
	}
	for _, n := range h.nats.nodes {
		check(n.name, n.process)
	}
	return errors.Join(errs...)
}

// verifyNoViolations: nats-server refused no client anything. Every
// process logs in as its nats.conf user, so a refusal is a permission the
// file lacks (or a client using what its role may not); the hostile
// events are all on subjects their producer may publish.
func (h *harness) verifyNoViolations() error {
	if v := h.nats.violations(); len(v) > 0 {
		return fmt.Errorf("nats-server refused %d+ requests (deploy/nats/nats.conf lacks a permission, or a process uses what its role may not), e.g.:\n%s",
			len(v), strings.Join(v[:min(5, len(v))], "\n"))
	}
	return nil
}

// verifyExercised: the run did what it is meant to prove something
// about; a check over nothing passes vacuously.
func verifyExercised(s Summary) error {
	var none []string
	for _, c := range []struct {
		what string
		n    int64
	}{
		{"logins", s.Logins}, {"duplicates", s.Duplicates}, {"lifecycle creates", s.Creates}, {"lifecycle deletes", s.Deletes},
		{"hostile events", int64(s.Hostile)}, {"outside writes", s.OutsideWrites}, {"owner changes", int64(s.OwnerChanges)},
		{"changes", int64(s.Changes)}, {"notices", s.UserNotices}, {"refreshes", s.Refreshes},
	} {
		if c.n <= 0 {
			none = append(none, c.what)
		}
	}
	if len(none) > 0 {
		return fmt.Errorf("the run proves nothing about what it did none of: %s", strings.Join(none, ", "))
	}
	return nil
}

// redeliveries counts deliveries beyond one per event (from the consumer's
// delivered sequence): events redelivered after a kill, a pause or a Nak.
func (h *harness) redeliveries(ctx context.Context) int64 {
	n := int64(-1)
	_ = retryJS(ctx, func(ctx context.Context) error {
		c, err := h.js.Consumer(ctx, "AUTH_EVENTS", "customdata-worker")
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		n = int64(info.Delivered.Consumer) - int64(info.Delivered.Stream)
		return nil
	})
	return n
}

// retryJS runs a JetStream read of the harness with 5 s per attempt, for
// up to 30 s: a request sent while a cluster elects its leaders may go
// unanswered for good, and a check must not hang on it. The last error is
// returned.
func retryJS(ctx context.Context, f func(context.Context) error) error {
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = f(actx)
		cancel()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
	}
}

// runReads keeps the issuer reading users (tokens issued and refreshed),
// so their documents sit in its cache when they change: the auth users
// and, half the time, outside users (owners before and after an owner
// change among them).
func runReads(ctx context.Context, seed uint64, cache *issuer.Cache, users []string, ow *outsideWrites) {
	rng := rand.New(rand.NewPCG(seed, 5))
	for ctx.Err() == nil {
		user := users[rng.IntN(len(users))]
		if rng.IntN(2) == 0 {
			if name := ow.randomName(rng); name != "" {
				user = name
			}
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, _ = cache.Get(rctx, user)
		cancel()
		time.Sleep(time.Millisecond)
	}
}
