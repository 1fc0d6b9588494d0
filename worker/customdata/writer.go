package customdata

import (
	"context"
	"errors"
	"fmt"
	"sync"

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
	// bufs recycles the buffers the write models of one Apply call are
	// encoded into (*[]byte). The driver is done with the models when
	// BulkWrite returns, so a buffer is reused only after that.
	bufs sync.Pool
}

// NewWriter writes to coll with cfg's write concern and user-id field;
// with cfg.AllowDuplicates it resolves each user's first document before
// updating. It fails only on an unusable write concern.
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

// Check refuses writes that would touch _id or the user-id field: a
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

// model appends the BSON of the operation for wr to buf and returns the
// operation, which refers to those bytes. Updates filter on the user-id
// field, or, when resolving, on the _id of the user's first document
// (target), keeping the user-id field in the filter so an upsert after a
// concurrent delete still creates a keyed document.
func (w *Writer) model(buf []byte, wr triggers.Write, target any) ([]byte, mongo.WriteModel, error) {
	var m modelSlot
	return w.modelInto(buf, &m, wr, target)
}

// modelSlot is the storage of one write model; Apply allocates them a
// batch at a time.
type modelSlot struct {
	update mongo.UpdateOneModel
	del    mongo.DeleteManyModel
	upsert bool
}

func (w *Writer) modelInto(buf []byte, slot *modelSlot, wr triggers.Write, target any) ([]byte, mongo.WriteModel, error) {
	if wr.Delete {
		// Every document of a deleted user goes, duplicates included.
		buf, filter, err := appendFilter(buf, w.field, wr.UserID, nil)
		if err != nil {
			return buf, nil, err
		}
		slot.del.Filter = filter
		return buf, &slot.del, nil
	}
	start := len(buf)
	buf, filter, err := appendFilter(buf, w.field, wr.UserID, target)
	if err != nil {
		return buf, nil, err
	}
	var update bson.Raw
	var keys [8]string
	buf, update, _, err = appendUpdate(buf, wr, keys[:0])
	if err != nil {
		return buf[:start], nil, err
	}
	slot.upsert = wr.Upsert
	slot.update = mongo.UpdateOneModel{Filter: filter, Update: update, Upsert: &slot.upsert}
	return buf, &slot.update, nil
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
	slots := make([]modelSlot, n)
	bp, _ := w.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	buf := (*bp)[:0]
	var encodeErr error
	for i, wr := range writes {
		var target any
		if w.resolveFirst && !wr.Delete {
			id, err := w.firstDocumentID(ctx, wr.UserID)
			if err != nil {
				w.putBuf(bp, buf)
				return w.allFailed(n, err)
			}
			target = id
		}
		var err error
		if buf, models[i], err = w.modelInto(buf, &slots[i], wr, target); err != nil {
			// triggers.ValidateWrite keeps such values out; should one
			// get here, it fails as a BulkWrite that cannot encode it
			// would: unattributable, so isolated below, Retry alone.
			models = nil
			encodeErr = err
			break
		}
	}
	err := encodeErr
	if models != nil {
		_, err = w.coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
	}
	w.putBuf(bp, buf)
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

// maxPooledBuf keeps an unusually large batch's buffer from being held
// for good.
const maxPooledBuf = 1 << 20

func (w *Writer) putBuf(bp *[]byte, buf []byte) {
	if cap(buf) > maxPooledBuf {
		return
	}
	*bp = buf[:0]
	w.bufs.Put(bp)
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
