package issuer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// An outage is logged when it starts and, while it lasts, again at most
// every stillDownEvery with the latest cause and the attempts so far, so a
// long outage is not silent after its first line.
func TestOutageLogging(t *testing.T) {
	var logs syncBuffer
	c := &Cache{log: zerolog.New(&logs), feed: &feed{cfg: NoticeConfig{Stream: "S"}, stillDownEvery: time.Minute}}
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	var out outage
	for i, step := range []struct {
		at          time.Duration
		err         string
		first, more int // lines logged so far
	}{
		{0, "nats: timeout", 1, 0},
		{time.Second, "nats: timeout", 1, 0},
		{59 * time.Second, "stream not found", 1, 0},
		{61 * time.Second, "stream not found", 1, 1},
		{90 * time.Second, "consumer refused", 1, 1},
		{2*time.Minute + 2*time.Second, "consumer refused", 1, 2},
	} {
		c.logOutage(&out, errors.New(step.err), t0.Add(step.at))
		if got, want := [2]int{logs.count("not following invalidation notices"), logs.count("still unable to follow invalidation notices")}, [2]int{step.first, step.more}; got != want {
			t.Fatalf("step %d (%v): logged %v (first, still), want %v", i, step.at, got, want)
		}
	}
	all := logs.String()
	last := all[strings.LastIndex(all, "{"):]
	for _, want := range []string{`"error":"consumer refused"`, `"attempts":6`, `"down_for_ms":122000`} {
		if !strings.Contains(last, want) {
			t.Errorf("last line %s lacks %s", last, want)
		}
	}
}

// From outside: while the stream stays missing, Run keeps saying so.
func TestLongOutageIsLoggedAgain(t *testing.T) {
	ns := testsupport.StartNATS(t)
	_, js := ns.Connect(t)
	src := newFake()
	src.set("ada", "d1", bson.E{Key: "plan", Value: "free"})
	var logs syncBuffer
	c, err := NewCache(src, CacheConfig{}, WithNotices(js, NoticeConfig{RetryWait: 20 * time.Millisecond}),
		WithLogger(zerolog.New(&logs)))
	if err != nil {
		t.Fatal(err)
	}
	c.feed.stillDownEvery = 100 * time.Millisecond
	runForAnHour(t, c)
	waitFor(t, func() bool { return logs.count("still unable to follow invalidation notices") >= 2 })
	if n := logs.count("not following invalidation notices"); n != 1 {
		t.Fatalf("outage start logged %d times, want once", n)
	}
	if !strings.Contains(logs.String(), "stream not found") {
		t.Fatalf("the repeated lines do not name the cause:\n%s", logs.String())
	}
	noticeStream(t, js)
	waitFor(t, c.Following)
}

// A JetStream request whose reply never comes (lost across a reconnect)
// must not hold Run until its context's deadline, however far: nats.go
// applies its own timeout only to contexts without one. Here every API
// request is swallowed, and Run must keep retrying, and saying so.
func TestUnansweredRequestsDoNotStallRun(t *testing.T) {
	js, _ := testsupport.UnansweredJetStream(t)
	var logs syncBuffer
	c, err := NewCache(newFake(), CacheConfig{}, WithNotices(js, NoticeConfig{RetryWait: 20 * time.Millisecond}),
		WithLogger(zerolog.New(&logs)))
	if err != nil {
		t.Fatal(err)
	}
	c.feed.requestLimit, c.feed.stillDownEvery = 200*time.Millisecond, 100*time.Millisecond
	runForAnHour(t, c)
	waitFor(t, func() bool { return logs.count("still unable to follow invalidation notices") >= 2 })
	if !strings.Contains(logs.String(), context.DeadlineExceeded.Error()) {
		t.Fatalf("the lines do not say the request timed out:\n%s", logs.String())
	}
	if c.Following() {
		t.Fatal("following a stream no one answers for")
	}
}

// runForAnHour runs c.Run under a context an hour long (so nats.go adds no
// timeout of its own) until the test ends; unlike runCache it does not
// wait for the cache to follow.
func runForAnHour(t *testing.T, c *Cache) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}
