package customdata

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/internal/outage"
)

// Collection guard timing.
const (
	// DefaultCollectionCheckInterval is how often the guard lists the
	// collection's indexes while all is well.
	DefaultCollectionCheckInterval = 5 * time.Second
	// collectionRecheckInterval is how often it looks while the
	// collection or its index is missing, so a collection that comes back
	// gets its index within about a second.
	collectionRecheckInterval = time.Second
	// collectionCheckTimeout bounds one check, index build included (the
	// server carries on with a build whose wait timed out; the next check
	// joins it).
	collectionCheckTimeout = 30 * time.Second
)

// Guard keeps the custom-data collection as startup left it
// while the worker runs. A collection dropped or renamed away loses its
// indexes and options; when it comes back (any insert or upsert recreates
// it) the guard restores the unique user index, as EnsureUserIndex does at
// startup, and, when configured, changeStreamPreAndPostImages. Until the
// unique index is back Healthy reports ErrUserIndexMissing, or why it
// cannot be built (duplicate users, a conflicting index), and the guard
// keeps trying; it never stops the worker.
//
// Every replica runs one: each writes to the collection and reports its
// own readiness, and the work is idempotent (listing indexes; creating an
// index that exists is a no-op). The notifier, which sees drop and rename
// events first, calls CheckNow.
type Guard struct {
	coll      *mongo.Collection
	cfg       Config
	preImages bool
	log       zerolog.Logger
	interval  time.Duration
	poke      chan struct{}

	mu        sync.Mutex
	problem   error // nil: the unique index is in place (or not wanted)
	collUUID  *bson.Binary
	wasAbsent bool // the collection was seen missing since it was last seen
	// preImagesPending: the collection was recreated and pre-images are
	// not yet restored on it.
	preImagesPending bool
}

// NewGuard returns a guard for coll. preImages: restore
// changeStreamPreAndPostImages on a recreated collection (set it when the
// notifier is configured to use pre-images).
func NewGuard(coll *mongo.Collection, cfg Config, preImages bool, log zerolog.Logger) (*Guard, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Guard{
		coll: coll, cfg: cfg, preImages: preImages,
		log:      log.With().Str("component", "collection-guard").Str("collection", namespace(coll)).Logger(),
		interval: DefaultCollectionCheckInterval,
		poke:     make(chan struct{}, 1),
	}, nil
}

// CheckNow asks for a check at once (e.g. the collection was just dropped
// or renamed). It never blocks.
func (g *Guard) CheckNow() {
	select {
	case g.poke <- struct{}{}:
	default:
	}
}

// Healthy returns nil while the unique user index is in place (always with
// AllowDuplicates, which promises no unique index), else an error wrapping
// ErrUserIndexMissing, ErrDuplicateUsers, ErrUserIndexConflict or
// ErrCollectionUncheckable.
func (g *Guard) Healthy() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.problem
}

// Run checks the collection every interval, faster while something is
// missing, and at once when asked, until ctx ends; it then returns nil.
func (g *Guard) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-g.poke:
		case <-t.C:
		}
		g.check(ctx)
		next := g.interval
		if errors.Is(g.Healthy(), ErrUserIndexMissing) {
			// Waiting for the collection to come back: look often. A
			// refusal (duplicates) waits for an operator at the normal
			// pace, since each attempt scans the collection.
			next = min(next, collectionRecheckInterval)
		}
		t.Reset(next)
	}
}

// check looks at the collection once and repairs what is missing.
func (g *Guard) check(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, collectionCheckTimeout)
	defer cancel()
	spec, err := g.collection(cctx)
	if err != nil {
		g.checkFailed("listCollections", err)
		return
	}
	if spec == nil {
		g.mu.Lock()
		g.wasAbsent = true
		g.mu.Unlock()
		if g.cfg.AllowDuplicates {
			g.report(nil)
		} else {
			g.report(fmt.Errorf("%w: collection %s does not exist (dropped or renamed?); the index is restored as soon as it is back",
				ErrUserIndexMissing, g.coll.Name()))
		}
		return
	}
	if g.seen(spec.UUID) && g.preImages {
		g.preImagesPending = true
	}
	if g.preImagesPending {
		g.restorePreImages(cctx, spec.Options)
	}
	indexes, err := userFieldIndexes(cctx, g.coll, g.cfg.UserIDField)
	if err != nil {
		g.checkFailed("listIndexes", err)
		return
	}
	if g.hasWantedIndex(indexes) {
		g.report(nil)
		return
	}
	if !g.cfg.AllowDuplicates && g.Healthy() == nil {
		// Not ready while the index builds; an earlier, more precise
		// reason stands.
		g.report(fmt.Errorf("%w on %s.%s (collection dropped or recreated?); restoring it", ErrUserIndexMissing, g.coll.Name(), g.cfg.UserIDField))
	}
	err = EnsureUserIndex(cctx, g.coll, g.cfg, g.log)
	switch {
	case err == nil:
		g.report(nil)
	case g.cfg.AllowDuplicates:
		g.report(nil) // no unique index is promised
		g.log.Debug().Err(err).Msg("restoring the user-id index failed; retrying")
	case errors.Is(err, ErrDuplicateUsers), errors.Is(err, ErrUserIndexConflict):
		// What startup refuses to start with: reported, retried, never
		// fatal here (an operator may fix it while the worker runs).
		g.report(err)
	default:
		g.report(fmt.Errorf("%w on %s.%s; restoring it failed, retrying: %w", ErrUserIndexMissing, g.coll.Name(), g.cfg.UserIDField, err))
	}
}

// checkFailed handles a failed look at the collection. MongoDB unavailable:
// the auth consumer and the notifier report that, and the last known state
// stands. Anything else (a missing privilege, which outage counts as an
// outage for writes, or a refusal) makes the replica not ready, with why,
// until a look succeeds: the guard cannot see whether the index is there.
func (g *Guard) checkFailed(what string, err error) {
	if outage.MongoDB(err) && !slices.Contains(outage.AccessCodes, outage.FirstCode(err)) {
		g.log.Debug().Err(err).Str("command", what).Msg("collection check failed; retrying")
		return
	}
	g.report(fmt.Errorf("%w: %s refused, retrying (the worker needs the listCollections and listIndexes privileges on the database): %w",
		ErrCollectionUncheckable, what, err))
}

// collection returns the collection's listCollections entry, nil when it
// does not exist.
func (g *Guard) collection(ctx context.Context) (*mongo.CollectionSpecification, error) {
	specs, err := g.coll.Database().ListCollectionSpecifications(ctx, bson.D{{Key: "name", Value: g.coll.Name()}})
	if err != nil {
		return nil, fmt.Errorf("list collections: %w", err)
	}
	if len(specs) == 0 {
		return nil, nil
	}
	return &specs[0], nil
}

// seen records that the collection exists with uuid and reports whether it
// was recreated since the last look: it was missing in between, or its
// UUID changed (dropped and recreated between two looks).
func (g *Guard) seen(uuid *bson.Binary) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	recreated := g.wasAbsent || (uuid != nil && g.collUUID != nil && !uuidEqual(uuid, g.collUUID))
	g.wasAbsent = false
	if uuid != nil {
		g.collUUID = uuid
	}
	return recreated
}

func uuidEqual(a, b *bson.Binary) bool {
	return a.Subtype == b.Subtype && string(a.Data) == string(b.Data)
}

func (g *Guard) hasWantedIndex(indexes []userIndex) bool {
	for _, ix := range indexes {
		if ix.unique || g.cfg.AllowDuplicates {
			return true
		}
	}
	return false
}

// report sets the health state and logs transitions once.
func (g *Guard) report(problem error) {
	g.mu.Lock()
	prev := g.problem
	g.problem = problem
	g.mu.Unlock()
	switch {
	case problem == nil && prev != nil:
		g.log.Info().Msg("unique index on the user-id field is back: one document per user holds again")
	case problem != nil && (prev == nil || prev.Error() != problem.Error()):
		switch {
		case errors.Is(problem, ErrCollectionUncheckable):
			g.log.Warn().Err(problem).Msg("cannot check the custom-data collection: not ready until a check succeeds")
		case errors.Is(problem, ErrUserIndexMissing):
			g.log.Warn().Err(problem).Msg("custom-data collection lacks its unique user index: not ready until it is restored")
		default:
			g.log.Error().Err(problem).Msg("custom-data collection lacks its unique user index: not ready until it is restored")
		}
	}
}

// restorePreImages enables changeStreamPreAndPostImages on a recreated
// collection unless its options already have it. An unavailable server is
// retried at the next check; a refusal (old server, missing privilege) is
// logged and not retried until the collection is recreated again.
func (g *Guard) restorePreImages(ctx context.Context, options bson.Raw) {
	if options != nil {
		if enabled, ok := options.Lookup("changeStreamPreAndPostImages", "enabled").BooleanOK(); ok && enabled {
			g.preImagesPending = false
			return
		}
	}
	err := g.coll.Database().RunCommand(ctx, bson.D{
		{Key: "collMod", Value: g.coll.Name()},
		{Key: "changeStreamPreAndPostImages", Value: bson.D{{Key: "enabled", Value: true}}},
	}).Err()
	if err != nil && outage.Is(err) {
		return
	}
	g.preImagesPending = false
	if err != nil {
		g.log.Warn().Err(err).Int("code", outage.FirstCode(err)).
			Msg("the collection was recreated; could not enable changeStreamPreAndPostImages on it (MongoDB 6.0+): deletes name only the document id")
		return
	}
	g.log.Info().Msg("the collection was recreated: changeStreamPreAndPostImages enabled on it again")
}
