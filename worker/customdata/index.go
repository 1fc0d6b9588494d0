package customdata

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// maxDuplicateSamples bounds the user ids an error or warning names.
const maxDuplicateSamples = 5

// EnsureUserIndex prepares the collection for one-document-per-user writes.
// It is idempotent and meant to run at startup.
//
// By default it ensures a unique index on cfg.UserIDField (partial: only
// documents that have the field). If duplicates prevent the index, it fails
// with an error wrapping ErrDuplicateUsers that names up to 5 duplicated
// ids. With cfg.AllowDuplicates it logs a warning (count and samples),
// ensures a plain index for lookups, and returns nil.
//
// Each call is bounded by cfg.IndexTimeout; past it, it fails with an error
// wrapping ErrIndexBuildTimeout that says what it waits for.
func EnsureUserIndex(ctx context.Context, coll *mongo.Collection, cfg Config, log zerolog.Logger) error {
	cfg.SetDefaults()
	if err := ValidateFieldName(cfg.UserIDField); err != nil {
		return fmt.Errorf("ensure user index: %w", err)
	}
	// Cancelled rather than given a deadline, even the caller's: the
	// driver turns a deadline into maxTimeMS, and an interrupted
	// createIndexes aborts the index build.
	attemptCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stopPropagation := context.AfterFunc(ctx, cancel)
	defer stopPropagation()
	timer := time.AfterFunc(cfg.IndexTimeout, cancel)
	defer timer.Stop()
	err := ensureUserIndex(attemptCtx, coll, cfg, log)
	if err != nil && ctx.Err() == nil && attemptCtx.Err() != nil {
		return fmt.Errorf("%w: index %s on %s.%s not confirmed within %s; createIndexes waits until a majority of the "+
			"replica set's data-bearing voting members have built it (commit quorum %q): check that they are up and "+
			"not lagging (the build continues on the server; the next attempt waits for it): %w",
			ErrIndexBuildTimeout, userIndexName(cfg.UserIDField), coll.Database().Name(), coll.Name(), cfg.IndexTimeout,
			userIndexCommitQuorum, context.DeadlineExceeded)
	}
	return err
}

func userIndexName(field string) string { return field + "_unique" }

func ensureUserIndex(ctx context.Context, coll *mongo.Collection, cfg Config, log zerolog.Logger) error {
	field := cfg.UserIDField
	existing, err := userFieldIndexes(ctx, coll, field)
	if err != nil {
		return err
	}

	if cfg.AllowDuplicates {
		dups, err := findDuplicateUsers(ctx, coll, field)
		if err != nil {
			return err
		}
		if dups.count > 0 {
			log.Warn().Str("collection", namespace(coll)).Str("field", field).
				Int64("duplicated_users", dups.count).Strs("sample_user_ids", dups.samples).
				Msg("custom-data collection holds several documents for some users; writes go to the first inserted (lowest _id) of each")
		}
		if len(existing) > 0 {
			return nil
		}
		// A plain index keeps the per-write lookups off collection scans.
		_, err = coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: field, Value: 1}}})
		if err != nil && !isIndexConflict(err) {
			return fmt.Errorf("ensure index on %s.%s: %w", coll.Name(), field, err)
		}
		return nil
	}

	for _, ix := range existing {
		if ix.unique {
			return nil
		}
	}
	if len(existing) > 0 {
		return fmt.Errorf("%w: index %q on %s.%s is not unique; drop it so the worker can create a unique one, or set CUSTOMDATA_ALLOW_DUPLICATE_USERS=true (Config.AllowDuplicates)",
			ErrUserIndexConflict, existing[0].name, coll.Name(), field)
	}
	// Partial so that documents without the field (not user documents)
	// do not collide on a missing key.
	model := mongo.IndexModel{
		Keys: bson.D{{Key: field, Value: 1}},
		Options: options.Index().SetUnique(true).SetName(userIndexName(field)).
			SetPartialFilterExpression(bson.D{{Key: field, Value: bson.D{{Key: "$exists", Value: true}}}}),
	}
	log.Info().Str("collection", namespace(coll)).Str("index", userIndexName(field)).Str("commit_quorum", userIndexCommitQuorum).
		Msg("building the unique index on the user-id field; it is ready once a majority of the data-bearing voting members built it")
	_, err = coll.Indexes().CreateOne(ctx, model, options.CreateIndexes().SetCommitQuorumString(userIndexCommitQuorum))
	switch {
	case err == nil:
		log.Info().Str("collection", namespace(coll)).Str("field", field).Msg("unique index on the user-id field is in place")
		return nil
	case mongo.IsDuplicateKeyError(err):
		dups, derr := findDuplicateUsers(ctx, coll, field)
		if derr != nil {
			return fmt.Errorf("%w in %s (listing them failed: %v); remove or merge the later-inserted documents, or set CUSTOMDATA_ALLOW_DUPLICATE_USERS=true (Config.AllowDuplicates)",
				ErrDuplicateUsers, coll.Name(), derr)
		}
		return duplicateUsersError(coll.Name(), field, dups)
	case isIndexConflict(err):
		return fmt.Errorf("%w: %s.%s: %v", ErrUserIndexConflict, coll.Name(), field, err)
	default:
		return fmt.Errorf("ensure unique index on %s.%s: %w", coll.Name(), field, err)
	}
}

func duplicateUsersError(collection, field string, d duplicateUsers) error {
	quoted := make([]string, len(d.samples))
	for i, s := range d.samples {
		quoted[i] = strconv.Quote(s)
	}
	return fmt.Errorf("%w: %s: %d user ids have more than one document (e.g. %s) so a unique index on %q cannot be built; "+
		"remove or merge the later-inserted documents of each (issuers read the one with the lowest _id), "+
		"or set CUSTOMDATA_ALLOW_DUPLICATE_USERS=true (Config.AllowDuplicates) to run without the unique index",
		ErrDuplicateUsers, collection, d.count, strings.Join(quoted, ", "), field)
}

func isIndexConflict(err error) bool {
	var se mongo.ServerError
	return errors.As(err, &se) && (se.HasErrorCode(85) || se.HasErrorCode(86)) // IndexOptionsConflict, IndexKeySpecsConflict
}

type userIndex struct {
	name   string
	unique bool
}

// userFieldIndexes lists the indexes whose key is exactly the user-id field.
func userFieldIndexes(ctx context.Context, coll *mongo.Collection, field string) ([]userIndex, error) {
	specs, err := coll.Indexes().ListSpecifications(ctx)
	if err != nil {
		return nil, fmt.Errorf("list indexes of %s: %w", coll.Name(), err)
	}
	var out []userIndex
	for _, s := range specs {
		elems, err := s.KeysDocument.Elements()
		if err != nil || len(elems) != 1 || elems[0].Key() != field {
			continue
		}
		out = append(out, userIndex{name: s.Name, unique: s.Unique != nil && *s.Unique})
	}
	return out, nil
}

type duplicateUsers struct {
	count   int64
	samples []string
}

// findDuplicateUsers counts user ids held by more than one document and
// returns up to maxDuplicateSamples of them.
func findDuplicateUsers(ctx context.Context, coll *mongo.Collection, field string) (duplicateUsers, error) {
	pipeline := mongo.Pipeline{
		{{Key: "$match", Value: bson.D{{Key: field, Value: bson.D{{Key: "$exists", Value: true}}}}}},
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$" + field}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
		{{Key: "$match", Value: bson.D{{Key: "n", Value: bson.D{{Key: "$gt", Value: 1}}}}}},
		{{Key: "$sort", Value: bson.D{{Key: "_id", Value: 1}}}},
		{{Key: "$facet", Value: bson.D{
			{Key: "samples", Value: bson.A{bson.D{{Key: "$limit", Value: maxDuplicateSamples}}}},
			{Key: "total", Value: bson.A{bson.D{{Key: "$count", Value: "n"}}}},
		}}},
	}
	cur, err := coll.Aggregate(ctx, pipeline)
	if err != nil {
		return duplicateUsers{}, fmt.Errorf("look for duplicate user ids in %s: %w", coll.Name(), err)
	}
	var res []struct {
		Samples []struct {
			ID bson.RawValue `bson:"_id"`
		} `bson:"samples"`
		Total []struct {
			N int64 `bson:"n"`
		} `bson:"total"`
	}
	if err := cur.All(ctx, &res); err != nil {
		return duplicateUsers{}, fmt.Errorf("look for duplicate user ids in %s: %w", coll.Name(), err)
	}
	var d duplicateUsers
	if len(res) == 0 {
		return d, nil
	}
	if len(res[0].Total) > 0 {
		d.count = res[0].Total[0].N
	}
	for _, s := range res[0].Samples {
		if str, ok := s.ID.StringValueOK(); ok {
			d.samples = append(d.samples, str)
		} else {
			d.samples = append(d.samples, s.ID.String())
		}
	}
	return d, nil
}

// namespace is coll's "<database>.<collection>", as every log line names
// the collection.
func namespace(coll *mongo.Collection) string { return coll.Database().Name() + "." + coll.Name() }
