// Package retry is the worker's one way to wait out an outage: an
// operation retried forever with backoff until it succeeds, says retrying
// cannot help, or its context ends; and one context-aware sleep.
package retry

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// NewBackOff is an exponential schedule from initial, doubling, capped at
// maxInterval, jittered by 20%.
func NewBackOff(initial, maxInterval time.Duration) *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = initial
	b.MaxInterval = maxInterval
	b.Multiplier = 2
	b.RandomizationFactor = 0.2
	b.Reset()
	return b
}

// Stop marks err as one that retrying cannot fix: Forever returns it
// (unwrapped) at once.
func Stop(err error) error { return backoff.Permanent(err) }

// Forever calls op until it succeeds or returns an error marked by Stop,
// waiting per b between attempts (b is reset first), for as long as it
// takes. onFail, if not nil, sees every failure before the wait; first is
// true for the first one of the call, which is the one to log. When ctx
// ends Forever returns ctx.Err() and op's last result.
func Forever[T any](ctx context.Context, b backoff.BackOff, op func() (T, error), onFail func(err error, first bool)) (T, error) {
	first := true
	opts := []backoff.RetryOption{backoff.WithBackOff(b), backoff.WithMaxElapsedTime(0)}
	if onFail != nil {
		opts = append(opts, backoff.WithNotify(func(err error, _ time.Duration) {
			onFail(err, first)
			first = false
		}))
	}
	v, err := backoff.Retry(ctx, op, opts...)
	if err != nil && ctx.Err() != nil {
		return v, ctx.Err()
	}
	return v, err
}

// Sleep waits d or until ctx ends; it reports whether the full wait
// elapsed (false at once when ctx has ended, true at once for d <= 0 on a
// live ctx).
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
