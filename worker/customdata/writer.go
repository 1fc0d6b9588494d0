package customdata

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/internal/outage"
	"github.com/customdata-worker/customdata-worker/triggers"
)

// Writer turns trigger writes into MongoDB operations on the
// custom-data collection.
type Writer struct {
	coll  *mongo.Collection // with the configured write concern
	field string
	// resolveFirst makes updates target the lowest _id of the user
	// explicitly; without a unique index the server could pick any match.
	resolveFirst bool
}

func NewWriter(coll *mongo.Collection, cfg Config) (*Writer, error) {
	cfg.SetDefaults()
	wc, err := cfg.writeConcern()
	if err != nil {
		return nil, err
	}
	return &Writer{
		coll:         coll.Clone(options.Collection().SetWriteConcern(wc)),
		field:        cfg.UserIDField,
		resolveFirst: cfg.AllowDuplicates,
	}, nil
}

// checkWrite refuses writes that would touch _id or the user-id field: a
// trigger may only change the document's data, never which user it is.
func (w *Writer) Check(wr triggers.Write) error {
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
func (w *Writer) model(wr triggers.Write, target any) mongo.WriteModel {
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
func (w *Writer) firstDocumentID(ctx context.Context, userID string) (any, error) {
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

// Apply sends writes as one unordered BulkWrite and returns the failure
// class and error of each. Operations are attributed individually when the
// server reports per-operation errors; an error that cannot be attributed
// makes the writer retry the operations one by one, so only the culprit
// fails.
func (w *Writer) Apply(ctx context.Context, writes []triggers.Write) ([]Fault, []error) {
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
		return []Fault{Retry}, []error{SanitizeError(err)}
	}
	// Unattributable: isolate. Writes of one round are for distinct users,
	// so their order does not matter.
	perOp, errs = make([]Fault, n), make([]error, n)
	for i := range writes {
		f, e := w.Apply(ctx, writes[i:i+1])
		perOp[i], errs[i] = f[0], e[0]
	}
	return perOp, errs
}

func (w *Writer) allFailed(n int, err error) ([]Fault, []error) {
	class := Retry
	if outage.MongoDB(err) {
		class = Outage
	}
	perOp, errs := make([]Fault, n), make([]error, n)
	for i := range perOp {
		perOp[i], errs[i] = class, SanitizeError(err)
	}
	return perOp, errs
}

// SanitizeError keeps the codes of a server error and drops its
// message, which may quote document content.
func SanitizeError(err error) error {
	if code := outage.FirstCode(err); code != 0 {
		return codeError{code: code}
	}
	return err
}
