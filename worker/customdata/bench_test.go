package customdata

import (
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/triggers"
)

// BenchmarkWriteModels measures encoding the write models of one batch of
// 100 lastLogin writes, per batch: "bsoncore" is what the writer does
// (filter and update appended into one reused buffer); "bson.D" is the
// driver encoding by reflection the filter and update as bson.D/bson.M
// (what the writer did before), for comparison.
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
