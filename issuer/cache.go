package issuer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"
)

// CacheConfig bounds the cache. The zero value is usable with WithNotices.
type CacheConfig struct {
	// MaxEntries is the most users kept (default 10000). When full, a
	// least-recently-used entry among a small random sample is evicted.
	MaxEntries int
	// TTL, when positive, drops an entry this long after it was read, as a
	// safety net behind notices, or as the only freshness bound without
	// them. Zero: entries live until a notice or eviction drops them.
	TTL time.Duration
	// ReadTimeout bounds one MongoDB read (default 10s). A read is shared by
	// every concurrent Get of the user, so it does not run on any one
	// caller's context; each caller still stops waiting when its own
	// context ends.
	ReadTimeout time.Duration
}

func (c *CacheConfig) setDefaults() {
	c.MaxEntries = cmp.Or(c.MaxEntries, 10000)
	c.ReadTimeout = cmp.Or(c.ReadTimeout, 10*time.Second)
}

// CacheOption adds optional behaviour to a Cache.
type CacheOption func(*Cache) error

// WithNotices keeps the cache fresh from the worker's invalidation notices
// on js. The caller must then run Cache.Run; until Run follows the notices,
// and whenever it cannot be sure it has seen every notice, Get reads
// through to MongoDB without keeping anything.
func WithNotices(js jetstream.JetStream, cfg NoticeConfig) CacheOption {
	return func(c *Cache) error {
		if js == nil {
			return errors.New("issuer: WithNotices: nil JetStream")
		}
		cfg.setDefaults()
		if err := cfg.Validate(); err != nil {
			return err
		}
		c.feed = &feed{js: js, cfg: cfg, beat: make(chan struct{}, 1)}
		return nil
	}
}

// WithMetricsLabels adds constant labels to every collector of the cache,
// so that several caches (say, one per collection) can register on one
// registry: give each its own label values.
func WithMetricsLabels(labels prometheus.Labels) CacheOption {
	return func(c *Cache) error {
		for k := range labels {
			if k == "kind" || k == "reason" {
				return fmt.Errorf("issuer: WithMetricsLabels: label %q is used by the cache's own metrics", k)
			}
		}
		c.labels = labels
		return nil
	}
}

// WithLogger sets the logger (default: none). The cache logs state changes
// (following, flushes with their reason), never custom-data contents.
func WithLogger(log zerolog.Logger) CacheOption {
	return func(c *Cache) error { c.log = log; return nil }
}

// Cache serves custom data from memory and reads MongoDB (through a Getter,
// normally a Source) on a miss. It is safe for concurrent use.
//
// Freshness: with WithNotices, every notice drops what it names (see
// HandleNotice) and anything that could hide a lost notice drops
// everything; with a TTL, entries also expire. Concurrent misses of one
// user share one read, and a read that overlaps an invalidation of that
// user is returned to its callers but never cached, so an older value
// cannot outlive the notice that replaced it.
type Cache struct {
	src    Getter
	cfg    CacheConfig
	log    zerolog.Logger
	m      *metrics
	feed   *feed
	now    func() time.Time // tests replace it
	clock  atomic.Int64     // recency clock: advances on every store and hit
	labels prometheus.Labels
	sf     singleflight.Group
	// waiting counts callers that have started or joined a read and wait
	// for it.
	waiting atomic.Int64

	mu      sync.RWMutex
	entries map[string]*entry
	byDoc   map[string][]*entry  // document _id → entries holding it (one, or briefly more after an owner change)
	flights map[string][]*flight // reads in progress, by user (usually one; more after an invalidation)
	keep    bool                 // whether reads may be kept: no feed configured, or the feed is followed
	docInvs uint64               // document invalidations so far: orders them against reads
}

type entry struct {
	userID  string
	data    Data
	expires time.Time    // zero: no TTL
	used    atomic.Int64 // last use, on Cache.clock
}

// NewCache returns a cache in front of src.
func NewCache(src Getter, cfg CacheConfig, opts ...CacheOption) (*Cache, error) {
	if src == nil {
		return nil, errors.New("issuer: nil source")
	}
	if cfg.MaxEntries < 0 || cfg.TTL < 0 || cfg.ReadTimeout < 0 {
		return nil, fmt.Errorf("issuer: negative cache setting: %+v", cfg)
	}
	cfg.setDefaults()
	c := &Cache{
		src: src, cfg: cfg, log: zerolog.Nop(), now: time.Now,
		entries: make(map[string]*entry),
		byDoc:   make(map[string][]*entry),
		flights: make(map[string][]*flight),
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	if c.feed == nil && cfg.TTL == 0 {
		return nil, ErrNoFreshness
	}
	c.keep = c.feed == nil
	c.m = newMetrics(c.labels, func() float64 {
		c.mu.RLock()
		defer c.mu.RUnlock()
		return float64(len(c.entries))
	})
	return c, nil
}

// Collectors returns the cache's Prometheus collectors for the issuer to
// register on its own registry (two caches on one registry need
// WithMetricsLabels): customdata_issuer_cache_hits_total,
// …_cache_misses_total, …_invalidations_total{kind}, …_flushes_total{reason},
// …_read_duration_seconds, …_read_errors_total, …_notices_total,
// …_notices_following, …_cache_entries.
func (c *Cache) Collectors() []prometheus.Collector { return c.m.collectors() }

// Get returns the user's custom data, from memory when cached. On a hit it
// takes a read lock, does not allocate, and returns a view sharing the
// cached bytes (see Data).
func (c *Cache) Get(ctx context.Context, userID string) (Data, error) {
	c.mu.RLock()
	e := c.entries[userID]
	if e != nil && (e.expires.IsZero() || c.now().Before(e.expires)) {
		// Exact LRU order: the clock moves on every use, except when
		// this entry is already the most recently used one.
		if e.used.Load() != c.clock.Load() {
			e.used.Store(c.clock.Add(1))
		}
		d := e.data
		c.mu.RUnlock()
		c.m.hits.Inc()
		return d, d.Err()
	}
	asked := c.docInvs
	c.mu.RUnlock()
	c.m.misses.Inc()
	return c.read(ctx, userID, asked)
}

// Refresh drops the user's entry and reads MongoDB again (the equivalent of
// App Services' refreshCustomData). It never joins a read that started
// before it.
func (c *Cache) Refresh(ctx context.Context, userID string) (Data, error) {
	c.mu.Lock()
	c.dropUser(userID)
	asked := c.docInvs
	c.mu.Unlock()
	c.m.invRefresh.Inc()
	return c.read(ctx, userID, asked)
}

// InvalidateUser drops what is cached for userID, and spoils a read of it in
// progress (its result is returned to its callers but not kept).
func (c *Cache) InvalidateUser(userID string) {
	c.mu.Lock()
	c.dropUser(userID)
	// Counted before the lock is released: a read that sees the new data
	// then also sees the invalidation counted.
	c.m.invUser.Inc()
	c.mu.Unlock()
}

// InvalidateDocument drops every entry holding the document with this _id
// (in notice form, see Data.DocumentID), and keeps a read in progress from
// caching that document.
func (c *Cache) InvalidateDocument(documentID string) {
	c.mu.Lock()
	c.dropDocument(documentID)
	c.mu.Unlock()
	c.m.invDoc.Inc()
}

// Flush drops everything and spoils every read in progress.
func (c *Cache) Flush() { c.flush(FlushManual) }

func (c *Cache) flush(reason string) {
	c.mu.Lock()
	c.flushLocked()
	c.mu.Unlock()
	c.m.flushes.WithLabelValues(reason).Inc()
}

func (c *Cache) flushLocked() {
	clear(c.entries)
	clear(c.byDoc)
	c.spoilAllLocked()
}

// setKeep switches between keeping reads (the feed is followed) and reading
// through; either way everything cached so far is dropped, since nothing
// read before the switch is known to be covered by the notices.
func (c *Cache) setKeep(keep bool, reason string) {
	c.mu.Lock()
	c.keep = keep
	c.flushLocked()
	c.mu.Unlock()
	c.m.flushes.WithLabelValues(reason).Inc()
	if keep {
		c.m.following.Set(1)
	} else {
		c.m.following.Set(0)
	}
}

// Following reports whether the cache keeps values: always without notices;
// with notices, while Run follows them. An issuer can use it for readiness.
func (c *Cache) Following() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.keep
}

// read performs (or joins) the one MongoDB read of userID, for a caller
// that asked when c.docInvs was asked. A joined read may have begun before
// a document invalidation the caller saw; if it returns that document,
// the caller reads again, from a read that begins after it asked.
func (c *Cache) read(ctx context.Context, userID string, asked uint64) (Data, error) {
	for again := false; ; again = true {
		ch := c.sf.DoChan(userID, func() (any, error) { return c.load(ctx, userID) })
		c.waiting.Add(1)
		var r singleflight.Result
		select {
		case r = <-ch:
			c.waiting.Add(-1)
		case <-ctx.Done():
			c.waiting.Add(-1)
			return Data{}, fmt.Errorf("issuer: read custom data: %w", ctx.Err())
		}
		res, _ := r.Val.(flightResult)
		if !again && invalidated(res.docs, res.d, asked) {
			// Any read begun after this Forget began after the caller
			// asked: it is fresh enough whatever happens meanwhile.
			c.mu.Lock()
			c.sf.Forget(userID)
			c.mu.Unlock()
			continue
		}
		return res.d, r.Err
	}
}

// load is one MongoDB read, shared by every caller that joins it.
func (c *Cache) load(ctx context.Context, userID string) (any, error) {
	c.mu.Lock()
	f := &flight{}
	c.flights[userID] = append(c.flights[userID], f)
	c.mu.Unlock()

	// Shared by every caller that joins: a caller's cancellation must
	// not fail the others, so the read is bounded by ReadTimeout only.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.ReadTimeout)
	start := time.Now()
	d, err := c.src.Get(rctx, userID)
	c.m.readSeconds.Observe(time.Since(start).Seconds())
	cancel()

	c.mu.Lock()
	defer c.mu.Unlock()
	c.endFlightLocked(userID, f)
	res := flightResult{d: d, docs: f.docs}
	if err != nil && !errors.Is(err, ErrOversize) {
		c.m.readErrors.Inc()
		return res, err
	}
	if c.keep && f.keeps(d) {
		c.storeLocked(userID, d)
	}
	return res, err
}

func (c *Cache) storeLocked(userID string, d Data) {
	c.dropEntryLocked(c.entries[userID])
	if len(c.entries) >= c.cfg.MaxEntries {
		c.evictLocked()
	}
	e := &entry{userID: userID, data: d}
	if c.cfg.TTL > 0 {
		e.expires = c.now().Add(c.cfg.TTL)
	}
	e.used.Store(c.clock.Add(1))
	c.entries[userID] = e
	if id := d.DocumentID(); id != "" {
		c.byDoc[id] = append(c.byDoc[id], e)
	}
}

// evictLocked drops the least recently used of a few entries picked at
// random (map iteration order), as Redis does: no list to maintain on hits,
// so a hit needs only the read lock (and writes its entry's stamp
// atomically).
func (c *Cache) evictLocked() {
	const sample = 8
	var victim *entry
	n := 0
	for _, e := range c.entries {
		if victim == nil || e.used.Load() < victim.used.Load() {
			victim = e
		}
		if n++; n == sample {
			break
		}
	}
	c.dropEntryLocked(victim)
}

// dropUser and the other drop functions run with c.mu held. dropUser and
// spoilAllLocked also make the reads in progress that may have seen the
// old value unjoinable (singleflight Forget), so callers arriving after
// the invalidation start a new read instead of sharing one that began
// before it. dropDocument cannot know which reads will return the
// document, so it only records itself in each (see read).
func (c *Cache) dropUser(userID string) {
	c.dropEntryLocked(c.entries[userID])
	for _, f := range c.flights[userID] {
		f.stale = true
	}
	c.sf.Forget(userID)
}

func (c *Cache) dropDocument(documentID string) {
	for _, e := range append([]*entry(nil), c.byDoc[documentID]...) {
		c.dropEntryLocked(e)
	}
	// Which document a read returns is known only when it ends: the read
	// is not kept if it returns this one, and a caller that joins it after
	// now reads again in that case.
	c.docInvs++
	inv := docInvalidation{id: documentID, seq: c.docInvs}
	for u, fs := range c.flights {
		for _, f := range fs {
			if !f.spoiledBy(inv) {
				c.sf.Forget(u)
			}
		}
	}
}

func (c *Cache) spoilAllLocked() {
	for u, fs := range c.flights {
		for _, f := range fs {
			f.stale = true
		}
		c.sf.Forget(u)
	}
}

func (c *Cache) endFlightLocked(userID string, f *flight) {
	fs := c.flights[userID]
	for i, x := range fs {
		if x == f {
			fs = append(fs[:i], fs[i+1:]...)
			break
		}
	}
	if len(fs) == 0 {
		delete(c.flights, userID)
	} else {
		c.flights[userID] = fs
	}
}

func (c *Cache) dropEntryLocked(e *entry) {
	if e == nil {
		return
	}
	if c.entries[e.userID] == e {
		delete(c.entries, e.userID)
	}
	id := e.data.DocumentID()
	if id == "" {
		return
	}
	list := c.byDoc[id]
	for i, x := range list {
		if x == e {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(c.byDoc, id)
	} else {
		c.byDoc[id] = list
	}
}
