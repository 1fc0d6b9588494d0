package worker

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
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/customdata-worker/customdata-worker/internal/outage"
	"github.com/customdata-worker/customdata-worker/triggers"
)

// Custom-data defaults.
const (
	DefaultUserIDField  = "userId"
	DefaultWriteConcern = "majority"
	DefaultWriteTimeout = 10 * time.Second
	DefaultIndexTimeout = 30 * time.Second
	// userIndexCommitQuorum: the unique index is ready once a majority of
	// the data-bearing voting members built it. The server's default,
	// "votingMembers", waits for all of them, indefinitely while one is
	// down; a member that comes back builds the index as it catches up.
	userIndexCommitQuorum = "majority"
)

// CustomDataConfig describes the custom-data collection: one document per
// user, keyed by UserIDField.
//
// When several documents carry the same user id, the one an issuer reads is
// the first inserted, i.e. the lowest _id (ObjectIds grow with insertion
// time), and that is the one the worker writes to.
type CustomDataConfig struct {
	// Database and Collection name the custom-data collection. Required.
	Database   string
	Collection string
	// UserIDField is the field holding the user id. Default "userId".
	UserIDField string
	// WriteConcern is "majority" (default) or a number of nodes, e.g. "1".
	// Messages are acknowledged only after MongoDB acknowledged the write
	// with this concern. 0 (unacknowledged) is refused.
	WriteConcern string
	// WriteTimeout bounds one write attempt (one BulkWrite, including
	// server selection). Default 10s.
	WriteTimeout time.Duration
	// IndexTimeout bounds one EnsureUserIndex call (listing indexes,
	// building the unique index). Default 30s. It is a client-side bound
	// only: no maxTimeMS is sent, since an interrupted createIndexes aborts
	// the build, while a call that gives up leaves it running on the
	// server, and the next call joins it.
	IndexTimeout time.Duration
	// AllowDuplicates accepts a collection holding several documents for
	// one user: no unique index is created, a warning names samples, and
	// updates resolve the first-inserted document before writing. Off by
	// default: a unique index on UserIDField guarantees one document per user.
	AllowDuplicates bool
}

func (c *CustomDataConfig) setDefaults() {
	if c.UserIDField == "" {
		c.UserIDField = DefaultUserIDField
	}
	if c.WriteConcern == "" {
		c.WriteConcern = DefaultWriteConcern
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.IndexTimeout == 0 {
		c.IndexTimeout = DefaultIndexTimeout
	}
}

// Validate checks the configuration after defaults are applied.
func (c CustomDataConfig) Validate() error {
	c.setDefaults()
	var errs []error
	if c.Database == "" {
		errs = append(errs, errors.New("custom data: database is required"))
	}
	if c.Collection == "" {
		errs = append(errs, errors.New("custom data: collection is required"))
	}
	if err := validateFieldName(c.UserIDField); err != nil {
		errs = append(errs, fmt.Errorf("custom data: user id field: %w", err))
	}
	if _, err := c.writeConcern(); err != nil {
		errs = append(errs, err)
	}
	if c.WriteTimeout < 0 {
		errs = append(errs, errors.New("custom data: write timeout must not be negative"))
	}
	if c.IndexTimeout < 0 {
		errs = append(errs, errors.New("custom data: index timeout must not be negative"))
	}
	return errors.Join(errs...)
}

// validateFieldName accepts a top-level field name MongoDB will not read as
// an operator or a path.
func validateFieldName(name string) error {
	switch {
	case name == "":
		return errors.New("field name is empty")
	case name == "_id":
		return errors.New("field name must not be _id")
	case strings.HasPrefix(name, "$"), strings.ContainsAny(name, ".\x00"):
		return fmt.Errorf("field name %q must not start with '$' or contain '.' or NUL", name)
	}
	return nil
}

func (c CustomDataConfig) writeConcern() (*writeconcern.WriteConcern, error) {
	if c.WriteConcern == "" || c.WriteConcern == "majority" {
		return writeconcern.Majority(), nil
	}
	n, err := strconv.Atoi(c.WriteConcern)
	if err != nil || n < 1 {
		return nil, fmt.Errorf("custom data: write concern %q: want \"majority\" or a number of nodes >= 1", c.WriteConcern)
	}
	return &writeconcern.WriteConcern{W: n}, nil
}

// ErrDuplicateUsers is returned (wrapped) by EnsureUserIndex when several
// documents share a user id and AllowDuplicates is off.
var ErrDuplicateUsers = errors.New("custom-data collection has several documents for the same user")

// ErrUserIndexConflict is returned (wrapped) when an index on the user-id
// field exists with options that prevent the unique index.
var ErrUserIndexConflict = errors.New("conflicting index on the user-id field")

// ErrIndexBuildTimeout is returned (wrapped, with context.DeadlineExceeded)
// when EnsureUserIndex did not finish within IndexTimeout: the unique index
// build is waiting for its commit quorum, or MongoDB does not answer. The
// build goes on on the server; calling again waits for it again.
var ErrIndexBuildTimeout = errors.New("the unique user-id index is not ready")

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
func EnsureUserIndex(ctx context.Context, coll *mongo.Collection, cfg CustomDataConfig, log zerolog.Logger) error {
	cfg.setDefaults()
	if err := validateFieldName(cfg.UserIDField); err != nil {
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

func ensureUserIndex(ctx context.Context, coll *mongo.Collection, cfg CustomDataConfig, log zerolog.Logger) error {
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
			log.Warn().Str("collection", coll.Name()).Str("field", field).
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
		return fmt.Errorf("%w: index %q on %s.%s is not unique; drop it so the worker can create a unique one, or enable AllowDuplicates",
			ErrUserIndexConflict, existing[0].name, coll.Name(), field)
	}
	// Partial so that documents without the field (not user documents)
	// do not collide on a missing key.
	model := mongo.IndexModel{
		Keys: bson.D{{Key: field, Value: 1}},
		Options: options.Index().SetUnique(true).SetName(userIndexName(field)).
			SetPartialFilterExpression(bson.D{{Key: field, Value: bson.D{{Key: "$exists", Value: true}}}}),
	}
	log.Info().Str("collection", coll.Name()).Str("index", userIndexName(field)).Str("commit_quorum", userIndexCommitQuorum).
		Msg("building the unique index on the user-id field; it is ready once a majority of the data-bearing voting members built it")
	_, err = coll.Indexes().CreateOne(ctx, model, options.CreateIndexes().SetCommitQuorumString(userIndexCommitQuorum))
	switch {
	case err == nil:
		log.Info().Str("collection", coll.Name()).Str("field", field).Msg("unique index on the user-id field is in place")
		return nil
	case mongo.IsDuplicateKeyError(err):
		dups, derr := findDuplicateUsers(ctx, coll, field)
		if derr != nil {
			return fmt.Errorf("%w in %s (listing them failed: %v); remove or merge the later-inserted documents, or enable AllowDuplicates",
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
		"or enable AllowDuplicates to run without the unique index",
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

// customDataWriter turns trigger writes into MongoDB operations on the
// custom-data collection.
type customDataWriter struct {
	coll  *mongo.Collection // with the configured write concern
	field string
	// resolveFirst makes updates target the lowest _id of the user
	// explicitly; without a unique index the server could pick any match.
	resolveFirst bool
}

func newCustomDataWriter(coll *mongo.Collection, cfg CustomDataConfig) (*customDataWriter, error) {
	cfg.setDefaults()
	wc, err := cfg.writeConcern()
	if err != nil {
		return nil, err
	}
	return &customDataWriter{
		coll:         coll.Clone(options.Collection().SetWriteConcern(wc)),
		field:        cfg.UserIDField,
		resolveFirst: cfg.AllowDuplicates,
	}, nil
}

// checkWrite refuses writes that would touch _id or the user-id field: a
// trigger may only change the document's data, never which user it is.
func (w *customDataWriter) checkWrite(wr triggers.Write) error {
	for _, m := range []map[string]any{wr.Set, wr.Max, wr.SetOnInsert} {
		for k := range m {
			if k == "_id" || k == w.field {
				return fmt.Errorf("write sets %q, which only the worker controls: %w", k, triggers.ErrPermanent)
			}
		}
	}
	return nil
}

// model builds the operation for wr. Updates filter on the user-id field,
// or, when resolving, on the _id of the user's first document (target),
// keeping the user-id field in the filter so an upsert after a concurrent
// delete still creates a keyed document.
func (w *customDataWriter) model(wr triggers.Write, target any) mongo.WriteModel {
	if wr.Delete {
		// Every document of a deleted user goes, duplicates included.
		return mongo.NewDeleteManyModel().SetFilter(bson.D{{Key: w.field, Value: wr.UserID}})
	}
	filter := bson.D{{Key: w.field, Value: wr.UserID}}
	if target != nil {
		filter = bson.D{{Key: "_id", Value: target}, {Key: w.field, Value: wr.UserID}}
	}
	update := bson.D{}
	for _, op := range []struct {
		name   string
		fields map[string]any
	}{{"$set", wr.Set}, {"$max", wr.Max}, {"$setOnInsert", wr.SetOnInsert}} {
		if len(op.fields) > 0 {
			update = append(update, bson.E{Key: op.name, Value: bson.M(op.fields)})
		}
	}
	return mongo.NewUpdateOneModel().SetFilter(filter).SetUpdate(update).SetUpsert(wr.Upsert)
}

// firstDocumentID returns the lowest _id among userID's documents, or nil
// when there is none.
func (w *customDataWriter) firstDocumentID(ctx context.Context, userID string) (any, error) {
	var doc struct {
		ID bson.RawValue `bson:"_id"`
	}
	err := w.coll.FindOne(ctx, bson.D{{Key: w.field, Value: userID}},
		options.FindOne().SetSort(bson.D{{Key: "_id", Value: 1}}).SetProjection(bson.D{{Key: "_id", Value: 1}})).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return doc.ID, nil
}

// bulkWrite sends writes as one unordered BulkWrite and returns the failure
// class and error of each. Operations are attributed individually when the
// server reports per-operation errors; an error that cannot be attributed
// makes the writer retry the operations one by one, so only the culprit
// fails.
func (w *customDataWriter) bulkWrite(ctx context.Context, writes []triggers.Write) ([]writeFailure, []error) {
	n := len(writes)
	models := make([]mongo.WriteModel, n)
	for i, wr := range writes {
		var target any
		if w.resolveFirst && !wr.Delete {
			id, err := w.firstDocumentID(ctx, wr.UserID)
			if err != nil {
				return w.allFailed(n, err)
			}
			target = id
		}
		models[i] = w.model(wr, target)
	}
	_, err := w.coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
	perOp, errs, ok := classifyBulkError(err, n, w.field)
	if ok {
		return perOp, errs
	}
	if n == 1 {
		return []writeFailure{writeTransient}, []error{sanitizeWriteError(err)}
	}
	// Unattributable: isolate. Writes of one round are for distinct users,
	// so their order does not matter.
	perOp, errs = make([]writeFailure, n), make([]error, n)
	for i := range writes {
		f, e := w.bulkWrite(ctx, writes[i:i+1])
		perOp[i], errs[i] = f[0], e[0]
	}
	return perOp, errs
}

func (w *customDataWriter) allFailed(n int, err error) ([]writeFailure, []error) {
	class := writeTransient
	if outage.MongoDB(err) {
		class = writeInfra
	}
	perOp, errs := make([]writeFailure, n), make([]error, n)
	for i := range perOp {
		perOp[i], errs[i] = class, sanitizeWriteError(err)
	}
	return perOp, errs
}

// sanitizeWriteError keeps the codes of a server error and drops its
// message, which may quote document content.
func sanitizeWriteError(err error) error {
	if code := outage.FirstCode(err); code != 0 {
		return writeCodeError{code: code}
	}
	return err
}
