package authsync

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/triggers"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

// BenchmarkAuthThroughput measures how fast the real consumer loop drains a
// backlog of LOGIN events into MongoDB (real NATS server, test MongoDB):
// b.N events are published first, then the timer runs from starting the
// consumer until every user's lastLogin holds its newest event time.
// "distinct" gives every event its own user (no coalescing); "hot" spreads
// them over 10 users, so coalescing turns a batch into at most 10 writes.
//
//	go test -run '^$' -bench AuthThroughput -benchtime 5000x ./worker/
func BenchmarkAuthThroughput(b *testing.B) {
	for _, users := range []int{0, 10} {
		name := "distinct"
		if users > 0 {
			name = fmt.Sprintf("hot-%d-users", users)
		}
		b.Run(name, func(b *testing.B) { benchAuthThroughput(b, users) })
	}
}

func benchAuthThroughput(b *testing.B, users int) {
	b.StopTimer()
	m := testsupport.MongoDB(b)
	n := testsupport.StartNATS(b)
	_, js := n.Connect(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	if users == 0 {
		users = b.N
	}
	data := customdata.Config{Database: testsupport.DatabaseName(b), Collection: "users"}
	coll := m.Client(b).Database(data.Database).Collection(data.Collection)
	seed := make([]any, users)
	for i := range seed {
		seed[i] = bson.M{"userId": fmt.Sprintf("user-%d", i)}
	}
	if _, err := coll.InsertMany(ctx, seed); err != nil {
		b.Fatal(err)
	}
	set, err := triggers.NewSet(triggers.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	c, err := New(js, coll, set, Config{}, WithData(data), WithRegisterer(prometheus.NewRegistry()))
	if err != nil {
		b.Fatal(err)
	}
	if err := customdata.EnsureUserIndex(ctx, coll, data, zerolog.Nop()); err != nil {
		b.Fatal(err)
	}
	if err := c.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	pub, err := events.NewPublisher(js)
	if err != nil {
		b.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	var newest time.Time
	for i := range b.N {
		ev := events.NewAuthEvent(events.OperationLogin, fmt.Sprintf("user-%d", i%users), "local-userpass")
		ev.Time = base.Add(time.Duration(i) * time.Millisecond)
		newest = ev.Time
		if _, err := pub.Publish(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
	// The last event of each user carries its newest time; all users are
	// done when each has lastLogin >= its own last time, i.e. when the
	// count of users at or past (newest - users + 1 ms) reaches users.
	threshold := newest.Add(-time.Duration(min(users, b.N)-1) * time.Millisecond)

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	b.StartTimer()
	start := time.Now()
	go func() { done <- c.Run(runCtx) }()
	for {
		applied, err := coll.CountDocuments(ctx, bson.M{"lastLogin": bson.M{"$gte": threshold}})
		if err != nil {
			b.Fatal(err)
		}
		if applied >= int64(min(users, b.N)) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	stop()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}
