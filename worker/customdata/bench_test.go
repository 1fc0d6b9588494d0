package customdata

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/triggers"
)

// BenchmarkWriteModels measures encoding the write models of one batch of
// 100 lastLogin writes, per batch: "bsoncore" is what the writer does
// (filter and update appended into one reused buffer); "sorted-bson.D" is
// the alternative without the driver's x/ package (bson.D with sorted
// fields, encoded by the driver); "bson.D" is what the writer did before
// (bson.D/bson.M by reflection).
//
//	go test -run '^$' -bench WriteModels -benchmem ./worker/customdata/
func BenchmarkWriteModels(b *testing.B) {
	base := time.Now().UTC()
	writes := make([]triggers.Write, 100)
	for i := range writes {
		writes[i] = triggers.Write{UserID: fmt.Sprintf("user-%d", i), Max: map[string]any{"lastLogin": base.Add(time.Duration(i) * time.Millisecond)}}
	}
	w := &Writer{field: "userId"}
	b.Run("bsoncore", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		slots := make([]modelSlot, len(writes))
		for b.Loop() {
			buf = buf[:0]
			for i, wr := range writes {
				var err error
				if buf, _, err = w.modelInto(buf, &slots[i], wr, nil); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("sorted-bson.D", func(b *testing.B) {
		// What the writer would hand the driver without bsoncore: bson.D
		// with the operator's fields in sorted order, encoded by the
		// driver (as BulkWrite does).
		b.ReportAllocs()
		var keys []string
		for b.Loop() {
			for _, wr := range writes {
				filter := bson.D{{Key: "userId", Value: wr.UserID}}
				keys = keys[:0]
				for k := range wr.Max {
					keys = append(keys, k)
				}
				slices.Sort(keys)
				fields := make(bson.D, 0, len(keys))
				for _, k := range keys {
					fields = append(fields, bson.E{Key: k, Value: wr.Max[k]})
				}
				update := bson.D{{Key: "$max", Value: fields}}
				if _, err := bson.Marshal(filter); err != nil {
					b.Fatal(err)
				}
				if _, err := bson.Marshal(update); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("bson.D", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, wr := range writes {
				filter := bson.D{{Key: "userId", Value: wr.UserID}}
				update := bson.D{{Key: "$max", Value: bson.M(wr.Max)}}
				if _, err := bson.Marshal(filter); err != nil {
					b.Fatal(err)
				}
				if _, err := bson.Marshal(update); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
