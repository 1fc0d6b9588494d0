package issuer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
)

// fakeSource serves documents from memory, counts reads, and can hold a
// read at its start until the test releases it (gate), so a test can put a
// notice exactly between a read and its return.
type fakeSource struct {
	mu    sync.Mutex
	docs  map[string]bson.Raw
	reads atomic.Int64
	err   error
	limit int
	// gate, when set, makes the next read announce itself on started and
	// wait for release before it looks at docs.
	gate *gate
}

type gate struct {
	started chan struct{}
	release chan struct{}
}

func newGate() *gate { return &gate{started: make(chan struct{}), release: make(chan struct{})} }

func newFake() *fakeSource { return &fakeSource{docs: map[string]bson.Raw{}} }

func (f *fakeSource) set(userID string, id any, fields ...bson.E) {
	d := bson.D{{Key: "_id", Value: id}, {Key: "userId", Value: userID}}
	raw, err := bson.Marshal(append(d, fields...))
	if err != nil {
		panic(err)
	}
	f.mu.Lock()
	f.docs[userID] = raw
	f.mu.Unlock()
}

func (f *fakeSource) remove(userID string) {
	f.mu.Lock()
	delete(f.docs, userID)
	f.mu.Unlock()
}

func (f *fakeSource) Get(ctx context.Context, userID string) (Data, error) {
	f.reads.Add(1)
	f.mu.Lock()
	g := f.gate
	f.gate = nil
	f.mu.Unlock()
	if g != nil {
		// Snapshot before blocking: the read "happened" now, whatever
		// changes while it is held.
		f.mu.Lock()
		raw := f.docs[userID]
		f.mu.Unlock()
		close(g.started)
		<-g.release
		return f.data(raw)
	}
	f.mu.Lock()
	raw, err := f.docs[userID], f.err
	f.mu.Unlock()
	if err != nil {
		return Data{}, err
	}
	return f.data(raw)
}

func (f *fakeSource) data(raw bson.Raw) (Data, error) {
	if raw == nil {
		return Data{}, nil
	}
	d, err := newData(raw, f.limit, f.limit > 0)
	if err != nil {
		return Data{}, err
	}
	return d, d.Err()
}

// following returns a cache that behaves as if Run were following notices.
func following(t *testing.T, src Getter, cfg CacheConfig) *Cache {
	t.Helper()
	c, err := NewCache(src, cfg, WithNotices(fakeJS{}, NoticeConfig{}))
	if err != nil {
		t.Fatal(err)
	}
	c.setKeep(true, FlushFollowing)
	return c
}

func plan(t *testing.T, c *Cache, user string) string {
	t.Helper()
	d, err := c.Get(context.Background(), user)
	if err != nil {
		t.Fatalf("Get(%s): %v", user, err)
	}
	if !d.Found() {
		return "<none>"
	}
	v, _ := d.Lookup("plan").StringValueOK()
	return v
}

func TestCacheServesRepeatedGetsFromMemory(t *testing.T) {
	src := newFake()
	src.set("ada", "d1", bson.E{Key: "plan", Value: "free"})
	c := following(t, src, CacheConfig{})
	for range 5 {
		if got := plan(t, c, "ada"); got != "free" {
			t.Fatalf("plan = %q", got)
		}
	}
	if n := src.reads.Load(); n != 1 {
		t.Fatalf("MongoDB reads = %d, want 1", n)
	}
	if hits := testutil.ToFloat64(c.m.hits); hits != 4 {
		t.Fatalf("hits = %v, want 4", hits)
	}
	// A user without a document is cached as "none" too.
	for range 2 {
		if got := plan(t, c, "nobody"); got != "<none>" {
			t.Fatalf("nobody: %q", got)
		}
	}
	if n := src.reads.Load(); n != 2 {
		t.Fatalf("MongoDB reads = %d, want 2", n)
	}
}

func TestNoticesDropWhatTheyName(t *testing.T) {
	prefix := events.DefaultNoticePrefix
	userNotice := func(user, doc string) (string, []byte) {
		return events.UserNoticeSubject(prefix, user),
			[]byte(fmt.Sprintf(`{"schemaVersion":1,"kind":"user","userId":%q,"documentId":%q,"operation":"update","publishedAt":"2026-11-25T00:00:00Z"}`, user, doc))
	}
	cases := []struct {
		name      string
		subject   string
		payload   []byte
		reReadAda bool
		reReadBob bool
	}{
		{"user notice drops that user only", events.UserNoticeSubject(prefix, "ada"), nil, true, false},
		{"user notice with payload", func() string { s, _ := userNotice("ada", "d1"); return s }(), func() []byte { _, p := userNotice("ada", "d1"); return p }(), true, false},
		// Owner change without pre-image: the notice names only the new
		// owner (carol) and the document; ada's entry holds that document.
		{"owner change drops the previous owner", func() string { s, _ := userNotice("carol", "d1"); return s }(), func() []byte { _, p := userNotice("carol", "d1"); return p }(), true, false},
		{"document notice drops the entry holding it", events.DocumentNoticeSubject(prefix, "d2"), nil, false, true},
		{"document notice for an unknown document", events.DocumentNoticeSubject(prefix, "zz"), nil, false, false},
		{"flush-all subject", events.FlushAllSubject(prefix), []byte(`{"schemaVersion":1,"kind":"flush_all","reason":"history_lost","publishedAt":"2026-11-25T00:00:00Z"}`), true, true},
		{"flush_all kind on another subject", events.UserNoticeSubject(prefix, "x"), []byte(`{"schemaVersion":1,"kind":"flush_all","reason":"history_lost","publishedAt":"2026-11-25T00:00:00Z"}`), true, true},
		{"undecodable token flushes", prefix + ".user.!!", nil, true, true},
		{"unknown subject kind flushes", prefix + ".group." + events.EncodeUserToken("ada"), nil, true, true},
		{"unrelated subject is ignored", "other.user." + events.EncodeUserToken("ada"), nil, false, false},
		// A user notice whose payload cannot be read may have named a
		// document that changed owner: only a flush is safe.
		{"unreadable user-notice payload flushes", events.UserNoticeSubject(prefix, "carol"), []byte(`{"schemaVersion":1,"kind":"user","documentId":`), true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := newFake()
			src.set("ada", "d1", bson.E{Key: "plan", Value: "free"})
			src.set("bob", "d2", bson.E{Key: "plan", Value: "free"})
			c := following(t, src, CacheConfig{})
			plan(t, c, "ada")
			plan(t, c, "bob")
			src.set("ada", "d1", bson.E{Key: "plan", Value: "pro"})
			src.set("bob", "d2", bson.E{Key: "plan", Value: "pro"})

			c.HandleNotice(tc.subject, tc.payload)

			want := map[bool]string{true: "pro", false: "free"}
			if got := plan(t, c, "ada"); got != want[tc.reReadAda] {
				t.Errorf("ada after notice: %q, want %q", got, want[tc.reReadAda])
			}
			if got := plan(t, c, "bob"); got != want[tc.reReadBob] {
				t.Errorf("bob after notice: %q, want %q", got, want[tc.reReadBob])
			}
		})
	}
}

func TestConcurrentMissesShareOneRead(t *testing.T) {
	src := newFake()
	src.set("ada", "d1", bson.E{Key: "plan", Value: "free"})
	g := newGate()
	src.gate = g
	c := following(t, src, CacheConfig{})

	const callers = 20
	var wg sync.WaitGroup
	results := make(chan string, callers)
	wg.Add(1)
	go func() { defer wg.Done(); results <- plan(t, c, "ada") }()
	<-g.started // the one read is in progress
	for range callers - 1 {
		wg.Add(1)
		go func() { defer wg.Done(); results <- plan(t, c, "ada") }()
	}
	// Wait until every caller has joined the read (a miss is counted
	// before it joins); none of them can finish before release.
	waitFor(t, func() bool { return c.waiting.Load() == callers })
	close(g.release)
	wg.Wait()
	close(results)
	for r := range results {
		if r != "free" {
			t.Fatalf("a caller got %q", r)
		}
	}
	if n := src.reads.Load(); n != 1 {
		t.Fatalf("MongoDB reads = %d, want 1", n)
	}
}

// A notice that arrives while a read is in flight: the read's (older)
// value goes to the callers that were already waiting, but is not cached,
// and a Get after the notice sees the change. After a notice naming the
// user (or everything) it starts a new read at once; after a document
// notice it may join the read in flight (which document that read returns
// is known only when it ends), and re-reads if the read returned that
// document.
func TestNoticeDuringReadIsNotOverwrittenByTheOlderValue(t *testing.T) {
	for _, tc := range []struct {
		name    string
		notice  func(t *testing.T, c *Cache)
		mayJoin bool
	}{
		{"user notice", func(_ *testing.T, c *Cache) {
			c.HandleNotice(events.UserNoticeSubject(events.DefaultNoticePrefix, "ada"), nil)
		}, false},
		{"document notice", func(_ *testing.T, c *Cache) {
			c.HandleNotice(events.DocumentNoticeSubject(events.DefaultNoticePrefix, "d1"), nil)
		}, true},
		{"owner change notice for the new owner", func(_ *testing.T, c *Cache) {
			c.HandleNotice(events.UserNoticeSubject(events.DefaultNoticePrefix, "carol"),
				[]byte(`{"schemaVersion":1,"kind":"user","userId":"carol","documentId":"d1","operation":"update","publishedAt":"2026-11-25T00:00:00Z"}`))
		}, true},
		{"flush-all", func(_ *testing.T, c *Cache) { c.HandleNotice(events.FlushAllSubject(events.DefaultNoticePrefix), nil) }, false},
		{"refresh", func(t *testing.T, c *Cache) {
			// Joining the held read would block until this deadline.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			d, err := c.Refresh(ctx, "ada")
			if err != nil {
				t.Errorf("Refresh joined the read that began before it: %v", err)
			} else if got := d.Lookup("plan").StringValue(); got != "pro" {
				t.Errorf("Refresh: %q, want pro", got)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newFake()
			src.set("ada", "d1", bson.E{Key: "plan", Value: "free"})
			g := newGate()
			src.gate = g
			c := following(t, src, CacheConfig{})

			first := make(chan string, 1)
			go func() { first <- plan(t, c, "ada") }()
			<-g.started // the read has seen plan=free and is held

			src.set("ada", "d1", bson.E{Key: "plan", Value: "pro"}) // the change commits
			tc.notice(t, c)                                         // its notice arrives

			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			type result struct {
				d   Data
				err error
			}
			after := make(chan result, 1)
			go func() { d, err := c.Get(ctx, "ada"); after <- result{d, err} }()
			var r result
			if tc.mayJoin {
				// Let it join the held read, or finish on its own.
				waitFor(t, func() bool { return c.waiting.Load() == 2 || len(after) == 1 })
				close(g.release)
				r = <-after
			} else {
				// It must not wait for the held read.
				r = <-after
				close(g.release)
			}
			if r.err != nil {
				t.Fatalf("Get after the notice: %v (joined the read that began before it?)", r.err)
			}
			if got := r.d.Lookup("plan").StringValue(); got != "pro" {
				t.Fatalf("Get after the notice: %q, want pro", got)
			}
			if got := <-first; got != "free" {
				t.Fatalf("the held read returned %q, want its own (older) value", got)
			}
			// The older value was not cached over the newer one.
			if got := plan(t, c, "ada"); got != "pro" {
				t.Fatalf("after the old read returned: %q, want pro", got)
			}
		})
	}
}

// Notices about other users and documents (the steady background of a
// busy worker: every user notice names a document) must not split the
// read of an unrelated user: a caller arriving after them still shares
// the read in flight, and its value is cached.
func TestUnrelatedNoticesKeepReadsShared(t *testing.T) {
	src := newFake()
	src.set("bob", "d2", bson.E{Key: "plan", Value: "free"})
	g := newGate()
	src.gate = g
	c := following(t, src, CacheConfig{})

	first := make(chan string, 1)
	go func() { first <- plan(t, c, "bob") }()
	<-g.started
	c.HandleNotice(events.UserNoticeSubject(events.DefaultNoticePrefix, "carol"),
		[]byte(`{"schemaVersion":1,"kind":"user","userId":"carol","documentId":"d9","operation":"update","publishedAt":"2026-11-25T00:00:00Z"}`))
	c.HandleNotice(events.DocumentNoticeSubject(events.DefaultNoticePrefix, "d1"), nil)

	second := make(chan string, 1)
	go func() { second <- plan(t, c, "bob") }()
	waitFor(t, func() bool { return c.waiting.Load() == 2 || len(second) == 1 })
	close(g.release)
	if a, b := <-first, <-second; a != "free" || b != "free" {
		t.Fatalf("reads returned %q and %q", a, b)
	}
	if n := src.reads.Load(); n != 1 {
		t.Fatalf("MongoDB reads = %d, want 1 (the later caller joins the read in flight)", n)
	}
	plan(t, c, "bob")
	if n := src.reads.Load(); n != 1 {
		t.Fatalf("MongoDB reads = %d, want 1 (bob's value is cached)", n)
	}
}

func TestRefreshRereadsAndNeverJoinsAnOlderRead(t *testing.T) {
	src := newFake()
	src.set("ada", "d1", bson.E{Key: "plan", Value: "free"})
	c := following(t, src, CacheConfig{})
	plan(t, c, "ada")
	src.set("ada", "d1", bson.E{Key: "plan", Value: "pro"})
	if got := plan(t, c, "ada"); got != "free" {
		t.Fatalf("cached value = %q (no notice yet)", got)
	}
	d, err := c.Refresh(context.Background(), "ada")
	if err != nil || d.Lookup("plan").StringValue() != "pro" {
		t.Fatalf("Refresh = %v, %v; want pro", d.Lookup("plan"), err)
	}
	if got := plan(t, c, "ada"); got != "pro" {
		t.Fatalf("after Refresh: %q", got)
	}
}

func TestWithoutNoticesTTLBoundsStaleness(t *testing.T) {
	if _, err := NewCache(newFake(), CacheConfig{}); !errors.Is(err, ErrNoFreshness) {
		t.Fatalf("no notices, no TTL: err = %v, want ErrNoFreshness", err)
	}
	src := newFake()
	src.set("ada", "d1", bson.E{Key: "plan", Value: "free"})
	c, err := NewCache(src, CacheConfig{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	c.now = func() time.Time { return time.Unix(0, now.Load()) }
	plan(t, c, "ada")
	src.set("ada", "d1", bson.E{Key: "plan", Value: "pro"})
	now.Add(int64(59 * time.Second))
	if got := plan(t, c, "ada"); got != "free" {
		t.Fatalf("within TTL: %q, want the cached free", got)
	}
	now.Add(int64(2 * time.Second))
	if got := plan(t, c, "ada"); got != "pro" {
		t.Fatalf("after TTL: %q, want pro", got)
	}
	if err := c.Run(context.Background()); !errors.Is(err, ErrNoticesNotConfigured) {
		t.Fatalf("Run without notices: %v", err)
	}
}

func TestNotFollowingReadsThrough(t *testing.T) {
	src := newFake()
	src.set("ada", "d1", bson.E{Key: "plan", Value: "free"})
	c, err := NewCache(src, CacheConfig{}, WithNotices(fakeJS{}, NoticeConfig{}))
	if err != nil {
		t.Fatal(err)
	}
	// Run has not started: a notice could be missed, so nothing is kept.
	plan(t, c, "ada")
	src.set("ada", "d1", bson.E{Key: "plan", Value: "pro"})
	if got := plan(t, c, "ada"); got != "pro" {
		t.Fatalf("before Run: %q, want a fresh read", got)
	}
	c.setKeep(true, FlushFollowing)
	plan(t, c, "ada")
	c.setKeep(false, FlushDisconnected) // e.g. NATS dropped
	src.set("ada", "d1", bson.E{Key: "plan", Value: "team"})
	if got := plan(t, c, "ada"); got != "team" {
		t.Fatalf("after the feed dropped: %q, want a fresh read", got)
	}
	if n := src.reads.Load(); n != 4 {
		t.Fatalf("reads = %d, want 4 (one per Get while not following, one to fill the cache)", n)
	}
}

func TestCacheStaysWithinMaxEntriesAndKeepsRecentlyUsed(t *testing.T) {
	src := newFake()
	for i := range 10 {
		src.set(fmt.Sprint("u", i), fmt.Sprint("d", i))
	}
	c := following(t, src, CacheConfig{MaxEntries: 4})
	for i := range 4 {
		plan(t, c, fmt.Sprint("u", i))
	}
	plan(t, c, "u0") // u0 is now the most recently used
	for i := 4; i < 10; i++ {
		plan(t, c, fmt.Sprint("u", i))
		if n := len(c.entries); n > 4 {
			t.Fatalf("%d entries, limit 4", n)
		}
	}
	// With fewer entries than the eviction sample, eviction is exact LRU:
	// the last four inserted survive.
	before := src.reads.Load()
	for i := 6; i < 10; i++ {
		plan(t, c, fmt.Sprint("u", i))
	}
	if src.reads.Load() != before {
		t.Fatal("recently used entries were evicted")
	}
	if len(c.byDoc) != 4 {
		t.Fatalf("document index has %d ids, want 4 (evicted entries must leave it)", len(c.byDoc))
	}
}

func TestOversizeRefusedIsCachedAndStillRefused(t *testing.T) {
	src := newFake()
	src.limit = 64
	src.set("ada", "d1", bson.E{Key: "blob", Value: string(make([]byte, 100))})
	c := following(t, src, CacheConfig{})
	for range 2 {
		d, err := c.Get(context.Background(), "ada")
		if !errors.Is(err, ErrOversize) || d.Raw() != nil || !d.Oversize() || d.DocumentID() != "d1" {
			t.Fatalf("Get = %+v, %v; want ErrOversize naming d1 with no content", d, err)
		}
	}
	if n := src.reads.Load(); n != 1 {
		t.Fatalf("reads = %d, want 1", n)
	}
}

func TestReadErrorsAreNotCachedAndWaitersStopOnTheirContext(t *testing.T) {
	src := newFake()
	src.err = errors.New("mongo down")
	c := following(t, src, CacheConfig{})
	for range 2 {
		if _, err := c.Get(context.Background(), "ada"); err == nil {
			t.Fatal("want the read error")
		}
	}
	if n := src.reads.Load(); n != 2 {
		t.Fatalf("reads = %d, want 2 (errors are not cached)", n)
	}

	src.err = nil
	src.set("ada", "d1", bson.E{Key: "plan", Value: "free"})
	g := newGate()
	src.gate = g
	leader := make(chan string, 1)
	go func() { leader <- plan(t, c, "ada") }()
	<-g.started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Get(ctx, "ada"); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled waiter got %v", err)
	}
	close(g.release)
	if got := <-leader; got != "free" {
		t.Fatalf("the other caller got %q", got)
	}
}

func TestFeedSequenceGaps(t *testing.T) {
	f := &feed{next: 10, gen: 2}
	for _, tc := range []struct {
		seq uint64
		gap bool
	}{{10, false}, {11, false}, {11, false}, {5, false}, {13, true}, {14, false}} {
		if _, gap := f.advance(2, tc.seq); gap != tc.gap {
			t.Fatalf("advance(%d) gap = %v, want %v", tc.seq, gap, tc.gap)
		}
	}
	// A late delivery of a stopped consumer is not sequenced.
	if _, gap := f.advance(1, 100); gap || f.next != 15 {
		t.Fatalf("an older consumer's delivery moved the sequence: gap %v, next %d", gap, f.next)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 15s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Hits count as use: with no store between them, the entry hit longest
// ago is still the one evicted. (Eviction is exact LRU while the cache
// holds fewer entries than the eviction sample; repeated because a
// recency tie would pick a victim at random.)
func TestEvictionFollowsHitsNotOnlyStores(t *testing.T) {
	for round := range 20 {
		src := newFake()
		for i := range 5 {
			src.set(fmt.Sprint("u", i), fmt.Sprint("d", i))
		}
		c := following(t, src, CacheConfig{MaxEntries: 4})
		for i := range 4 {
			plan(t, c, fmt.Sprint("u", i))
		}
		for _, u := range []string{"u3", "u2", "u1", "u0"} { // u3 is now the least recently used
			plan(t, c, u)
		}
		plan(t, c, "u4")
		if _, kept := c.entries["u3"]; kept || len(c.entries) != 4 {
			t.Fatalf("round %d: u3 kept = %v with %d entries; the least recently hit entry must go", round, kept, len(c.entries))
		}
	}
}

// Two caches register on one registry when their collectors carry
// distinct constant labels.
func TestTwoCachesOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, coll := range []string{"a", "b"} {
		c, err := NewCache(newFake(), CacheConfig{TTL: time.Minute}, WithMetricsLabels(prometheus.Labels{"collection": coll}))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range c.Collectors() {
			if err := reg.Register(m); err != nil {
				t.Fatalf("cache %s: %v", coll, err)
			}
		}
	}
	if _, err := NewCache(newFake(), CacheConfig{TTL: time.Minute}, WithMetricsLabels(prometheus.Labels{"reason": "x"})); err == nil {
		t.Fatal("a label clashing with the cache's own was accepted")
	}
}
