package opcheck

import (
	"context"
	"fmt"
	"io"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// progressEvery is how many documents pass between progress lines; a
// collection smaller than it gets none.
const progressEvery = 10000

// maxSamples bounds the ids a line names.
const maxSamples = 5

// sample is what reading up to limit documents found.
type sample struct {
	read, estimated  int64
	duplicated       int
	duplicateSamples []string
	oversize         int
	oversizeSamples  []string
}

// readSample reads up to limit documents in natural order and counts the
// user ids held by several of them (unless a unique index rules that out)
// and the documents above oversizeBytes (their BSON size, as the notifier
// measures it).
func readSample(ctx context.Context, coll *mongo.Collection, field string, limit, oversizeBytes int, unique bool, progress io.Writer) (sample, error) {
	var s sample
	if limit < 0 {
		return s, nil
	}
	est, err := coll.EstimatedDocumentCount(ctx)
	if err != nil {
		return s, err
	}
	s.estimated = est
	total := min(est, int64(limit))
	cur, err := coll.Find(ctx, bson.D{}, options.Find().SetLimit(int64(limit)).SetBatchSize(1000))
	if err != nil {
		return s, err
	}
	defer cur.Close(context.WithoutCancel(ctx))
	seen := map[string]int{}
	for cur.Next(ctx) {
		s.read++
		doc := cur.Current
		if oversizeBytes > 0 && len(doc) > oversizeBytes {
			s.oversize++
			if len(s.oversizeSamples) < maxSamples {
				s.oversizeSamples = append(s.oversizeSamples, doc.Lookup("_id").String())
			}
		}
		if !unique {
			if v, err := doc.LookupErr(field); err == nil {
				key := v.String()
				seen[key]++
				if seen[key] == 2 {
					s.duplicated++
					if len(s.duplicateSamples) < maxSamples {
						s.duplicateSamples = append(s.duplicateSamples, key)
					}
				}
			}
		}
		if progress != nil && total > progressEvery && s.read%progressEvery == 0 {
			fmt.Fprintf(progress, "sampling %s: %d of %d documents read\n", coll.Name(), s.read, total)
		}
	}
	return s, cur.Err()
}
