package issuer

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

func TestLeaderBeatsNeedEveryPartition(t *testing.T) {
	const timeout = 30 * time.Second
	t0 := time.Unix(1_800_000_000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	type beat struct{ sec, part, count int }
	for _, tc := range []struct {
		name        string
		beats       []beat
		now         int
		wantSilent  bool
		wantMissing []int
	}{
		{"start of following counts", nil, 20, false, nil},
		{"nothing heard after the start", nil, 31, true, []int{0}},
		{"old heartbeats (0 of 1) keep it alive", []beat{{25, 0, 1}}, 50, false, nil},
		{"every partition heard", []beat{{10, 0, 3}, {11, 1, 3}, {12, 2, 3}}, 40, false, nil},
		{"one partition silent", []beat{{10, 0, 3}, {11, 1, 3}, {12, 2, 3}, {38, 0, 3}, {39, 1, 3}}, 43, true, []int{2}},
		{"a partition never heard has the layout's first beat as grace", []beat{{10, 0, 2}}, 35, false, nil},
		{"…until that runs out", []beat{{10, 0, 2}, {38, 0, 2}}, 41, true, []int{1}},
		// A rolling change of NOTIFIER_PARTITIONS: the old count's beats
		// keep it alive while the new count is incomplete.
		{"old count alive, new count incomplete", []beat{{10, 0, 4}, {30, 0, 1}, {40, 0, 4}}, 45, false, nil},
		{"invalid partition counts as 0 of 1", []beat{{40, 5, 2}}, 50, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b leaderBeats
			b.start(t0)
			for _, x := range tc.beats {
				b.heard(x.part, x.count, at(x.sec))
			}
			silent, _, missing := b.silence(at(tc.now), timeout)
			if (silent > 0) != tc.wantSilent {
				t.Fatalf("silent %s, want silent=%v", silent, tc.wantSilent)
			}
			if !slices.Equal(missing, tc.wantMissing) {
				t.Fatalf("silent partitions %v, want %v", missing, tc.wantMissing)
			}
		})
	}
}

// TestPartitionSilentMeansReadThrough: with a partitioned notifier, the
// cache follows only while every partition's leader beats.
func TestPartitionSilentMeansReadThrough(t *testing.T) {
	_, js := testsupport.StartNATS(t).Connect(t)
	noticeStream(t, js)
	c, err := NewCache(newFake(), CacheConfig{}, WithNotices(js, NoticeConfig{LeaderTimeout: 400 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	second := make(chan bool, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // the leaders of partitions 0 and (when on) 1 of 2
		on := false
		for ctx.Err() == nil {
			select {
			case on = <-second:
			case <-time.After(50 * time.Millisecond):
			}
			subject := events.HeartbeatSubject(events.DefaultNoticePrefix)
			_, _ = js.Publish(ctx, subject, []byte(`{"schemaVersion":1,"kind":"heartbeat","partition":0,"partitions":2}`))
			if on {
				_, _ = js.Publish(ctx, subject, []byte(`{"schemaVersion":1,"kind":"heartbeat","partition":1,"partitions":2}`))
			}
		}
	}()
	runCache(t, c)
	waitFor(t, func() bool { return !c.Following() })
	if n := testutil.ToFloat64(c.m.flushes.WithLabelValues(FlushNoLeader)); n != 1 {
		t.Fatalf("flushes{reason=no_leader} = %v, want 1", n)
	}
	second <- true
	waitFor(t, c.Following)
}
