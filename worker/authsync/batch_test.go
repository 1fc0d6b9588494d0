package authsync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/triggers"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

// scriptedBulk answers bulk writes from a script: for each call, the
// failure of each write, chosen by a function of the write.
type scriptedBulk struct {
	mu    sync.Mutex
	calls [][]triggers.Write
	// answer returns the outcome of write w in call number call (0-based).
	answer func(call int, w triggers.Write) customdata.Fault
}

func (s *scriptedBulk) Apply(_ context.Context, writes []triggers.Write) ([]customdata.Fault, []error) {
	s.mu.Lock()
	call := len(s.calls)
	s.calls = append(s.calls, slices.Clone(writes))
	s.mu.Unlock()
	f, e := make([]customdata.Fault, len(writes)), make([]error, len(writes))
	for i, w := range writes {
		f[i] = s.answer(call, w)
		if f[i] != customdata.OK {
			e[i] = fmt.Errorf("scripted %s failure", f[i])
		}
	}
	return f, e
}

// describe lists the calls as "user:kind" per write, for assertions.
func (s *scriptedBulk) Check(triggers.Write) error { return nil }

func (s *scriptedBulk) describe() string {
	var calls []string
	for _, c := range s.calls {
		var ws []string
		for _, w := range c {
			kind := "update"
			if w.Delete {
				kind = "delete"
			}
			ws = append(ws, w.UserID+":"+kind)
		}
		calls = append(calls, "["+strings.Join(ws, " ")+"]")
	}
	return strings.Join(calls, " ")
}

func newBatchTestConsumer(t *testing.T, bulk *scriptedBulk) *Consumer {
	t.Helper()
	cfg := Config{RetryMaxInterval: 20 * time.Millisecond}
	cfg.SetDefaults()
	data := customdata.Config{Database: "d", Collection: "c"}
	data.SetDefaults()
	m, err := newAuthMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Consumer{cfg: cfg, data: data, writer: bulk, metrics: m, log: zerolog.Nop()}
}

func TestAuthApplyWritesMapsFailuresToMessages(t *testing.T) {
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	login := func(user string, min int) triggers.Write {
		return triggers.Write{UserID: user, Max: map[string]any{"lastLogin": at.Add(time.Duration(min) * time.Minute)}}
	}
	del := func(user string) triggers.Write { return triggers.Write{UserID: user, Delete: true} }
	create := func(user string) triggers.Write {
		return triggers.Write{UserID: user, Upsert: true, SetOnInsert: map[string]any{"createdAt": at}}
	}
	type want struct {
		failure  customdata.Fault
		done     bool // all writes acknowledged
		requeue  bool
		blockErr bool // failed because an earlier write of its user failed
	}
	cases := []struct {
		name     string
		writes   []triggers.Write // one message per write
		answer   func(call int, w triggers.Write) customdata.Fault
		shutdown bool
		want     []want
		calls    string
	}{
		{
			name:   "all succeed in one round",
			writes: []triggers.Write{login("a", 1), login("b", 1)},
			answer: func(int, triggers.Write) customdata.Fault { return customdata.OK },
			want:   []want{{done: true}, {done: true}},
			calls:  "[a:update b:update]",
		},
		{
			name:   "a failing operation fails only its own message",
			writes: []triggers.Write{login("a", 1), login("b", 1), login("c", 1)},
			answer: func(_ int, w triggers.Write) customdata.Fault {
				if w.UserID == "b" {
					return customdata.Permanent
				}
				return customdata.OK
			},
			want:  []want{{done: true}, {failure: customdata.Permanent}, {done: true}},
			calls: "[a:update b:update c:update]",
		},
		{
			name:   "later rounds of a failed user do not run",
			writes: []triggers.Write{del("a"), del("b"), create("a"), create("b")},
			answer: func(_ int, w triggers.Write) customdata.Fault {
				if w.UserID == "a" && w.Delete {
					return customdata.Retry
				}
				return customdata.OK
			},
			want: []want{
				{failure: customdata.Retry}, {done: true},
				{failure: customdata.Retry, blockErr: true}, {done: true},
			},
			calls: "[a:delete b:delete] [b:update]",
		},
		{
			name:   "a merged operation that fails for good is isolated",
			writes: []triggers.Write{login("a", 1), login("a", 2), login("a", 3)},
			answer: func(call int, w triggers.Write) customdata.Fault {
				if call == 0 {
					return customdata.Permanent // the merged write
				}
				if call == 2 {
					return customdata.Permanent // the second message's own write
				}
				return customdata.OK
			},
			want:  []want{{done: true}, {failure: customdata.Permanent}, {done: true}},
			calls: "[a:update] [a:update] [a:update] [a:update]",
		},
		{
			name:   "an isolated write that will be retried holds back its user's later writes",
			writes: []triggers.Write{login("a", 1), login("a", 2), login("a", 3)},
			answer: func(call int, w triggers.Write) customdata.Fault {
				switch call {
				case 0:
					return customdata.Permanent // the merged write
				case 1:
					return customdata.Retry // the first message's own write
				}
				return customdata.OK
			},
			want: []want{
				{failure: customdata.Retry},
				{failure: customdata.Retry, blockErr: true}, {failure: customdata.Retry, blockErr: true},
			},
			calls: "[a:update] [a:update]",
		},
		{
			name:   "infrastructure failures are retried in place without blame",
			writes: []triggers.Write{login("a", 1), login("b", 1)},
			answer: func(call int, w triggers.Write) customdata.Fault {
				if call < 2 || (call == 2 && w.UserID == "b") {
					return customdata.Outage
				}
				return customdata.OK
			},
			want:  []want{{done: true}, {done: true}},
			calls: "[a:update b:update] [a:update b:update] [a:update b:update] [b:update]",
		},
		{
			name:     "shutdown while MongoDB is down requeues unfinished messages",
			writes:   []triggers.Write{login("a", 1), del("b"), create("b")},
			answer:   func(call int, w triggers.Write) customdata.Fault { return customdata.Outage },
			shutdown: true,
			want:     []want{{requeue: true}, {requeue: true}, {requeue: true}},
			calls:    "[a:update b:delete]",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bulk := &scriptedBulk{answer: tc.answer}
			a := newBatchTestConsumer(t, bulk)
			items := make([]*authItem, len(tc.writes))
			var planned plannedWrites
			for i, w := range tc.writes {
				items[i] = &authItem{op: "LOGIN", writes: 1, remaining: 1}
				planned.add(w, items[i])
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.shutdown {
				cancel()
			}
			a.applyWrites(ctx, context.Background(), items, planned)
			for i, w := range tc.want {
				it := items[i]
				if it.failure != w.failure || (it.remaining == 0) != w.done || it.requeue != w.requeue {
					t.Errorf("message %d: failure %s, remaining %d, requeue %v; want failure %s, done %v, requeue %v",
						i, it.failure, it.remaining, it.requeue, w.failure, w.done, w.requeue)
				}
				if w.blockErr != errors.Is(it.failErr, errBlockedByEarlierWrite) {
					t.Errorf("message %d: error %v, blocked-by-earlier-write %v", i, it.failErr, w.blockErr)
				}
			}
			if got := bulk.describe(); got != tc.calls {
				t.Errorf("bulk calls = %s\nwant         %s", got, tc.calls)
			}
		})
	}
}
