package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestNewBackOffIsCapped(t *testing.T) {
	b := NewBackOff(100*time.Millisecond, time.Second)
	var last time.Duration
	for range 20 {
		last = b.NextBackOff()
		if last <= 0 || last > time.Second+time.Second/5 {
			t.Fatalf("backoff step %s outside (0, cap+jitter]", last)
		}
	}
	if last < 800*time.Millisecond {
		t.Fatalf("backoff after 20 steps = %s, want near the 1s cap", last)
	}
}

func TestForever(t *testing.T) {
	errDown := errors.New("down")
	errBad := errors.New("bad request")
	t.Run("until success, first failure flagged once", func(t *testing.T) {
		calls, firsts, fails := 0, 0, 0
		v, err := Forever(context.Background(), NewBackOff(time.Millisecond, time.Millisecond), func() (int, error) {
			calls++
			if calls < 4 {
				return 0, errDown
			}
			return 42, nil
		}, func(err error, first bool) {
			fails++
			if first {
				firsts++
			}
		})
		if v != 42 || err != nil || calls != 4 || fails != 3 || firsts != 1 {
			t.Fatalf("v=%d err=%v calls=%d fails=%d firsts=%d", v, err, calls, fails, firsts)
		}
	})
	t.Run("stop", func(t *testing.T) {
		calls := 0
		_, err := Forever(context.Background(), NewBackOff(time.Millisecond, time.Millisecond), func() (int, error) {
			calls++
			return 0, Stop(errBad)
		}, nil)
		if !errors.Is(err, errBad) || calls != 1 {
			t.Fatalf("err=%v calls=%d; want the stop error after one call", err, calls)
		}
	})
	t.Run("context ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		calls := 0
		_, err := Forever(ctx, NewBackOff(time.Hour, time.Hour), func() (int, error) {
			calls++
			return 0, errDown
		}, func(error, bool) { cancel() })
		if !errors.Is(err, context.Canceled) || calls != 1 {
			t.Fatalf("err=%v calls=%d; want context.Canceled after one call", err, calls)
		}
	})
}

func TestSleep(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("a full sleep reports false")
	}
	if !Sleep(context.Background(), 0) {
		t.Fatal("a zero sleep on a live context reports false")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) || Sleep(ctx, 0) {
		t.Fatal("a sleep on an ended context reports true")
	}
}
