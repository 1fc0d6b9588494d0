package issuer

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// BenchmarkGetHit is the cost of Get on a cached user: the README quotes
// it (make bench). It should stay well under a microsecond with 0 allocs.
func BenchmarkGetHit(b *testing.B) {
	for _, tc := range []struct {
		name string
		cfg  CacheConfig
	}{{"notices", CacheConfig{}}, {"notices+ttl", CacheConfig{TTL: time.Hour}}} {
		b.Run(tc.name, func(b *testing.B) {
			c := benchCache(b, tc.cfg)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := c.Get(ctx, benchUsers[i%len(benchUsers)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("parallel", func(b *testing.B) {
		c := benchCache(b, CacheConfig{})
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := c.Get(ctx, benchUsers[i%len(benchUsers)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	})
}

var benchUsers = func() []string {
	u := make([]string, 1000)
	for i := range u {
		u[i] = fmt.Sprintf("user-%04d@example.com", i)
	}
	return u
}()

func benchCache(b *testing.B, cfg CacheConfig) *Cache {
	src := newFake()
	for i, u := range benchUsers {
		src.set(u, bson.NewObjectID(), bson.E{Key: "plan", Value: "pro"}, bson.E{Key: "n", Value: i})
	}
	c, err := NewCache(src, cfg, WithNotices(fakeJS{}, NoticeConfig{}))
	if err != nil {
		b.Fatal(err)
	}
	c.setKeep(true, FlushFollowing)
	for _, u := range benchUsers {
		if _, err := c.Get(context.Background(), u); err != nil {
			b.Fatal(err)
		}
	}
	return c
}
