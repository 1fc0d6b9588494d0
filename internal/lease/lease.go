// Package lease is a leadership lease in a NATS KV bucket: one holder at
// a time, renewed by revision, aged out by the bucket's TTL.
package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
)

// Lease is a leadership lease in a KV bucket whose TTL (stream MaxAge) is
// the lease TTL.
//
// Acquire is kv.Create, which fails while anyone's value is live. Renew is
// kv.Update with the revision of our last write, so it fails as soon as
// anyone else wrote the key; a leader that cannot renew stops at once. If
// the leader dies, its last value ages out after the TTL and the next
// Create of a standby succeeds. Two leaders can only overlap while a
// renewal is in flight; their notices carry the same Nats-Msg-Id per
// change, so the overlap stores nothing twice.
//
// A lease is owned by one goroutine at a time (the notifier's Run).
type Lease struct {
	kv  jetstream.KeyValue
	key string
	// instance is the configured replica name; session is random per
	// process, so a restarted replica never mistakes an old lease for its
	// own.
	instance string
	session  string
	ttl      time.Duration

	rev    uint64 // revision of our last write while held
	holder string // last holder seen by a failed acquire, for logs
}

// leaseRecord is the lease value, for humans looking at the bucket and to
// recognise our own lease after a failed renewal.
type leaseRecord struct {
	Instance   string    `json:"instance"`
	Session    string    `json:"session"`
	AcquiredAt time.Time `json:"acquiredAt"`
	RenewedAt  time.Time `json:"renewedAt"`
}

// New is instance's lease under key of kv, held for ttl after each
// acquisition or renewal. It does not contact the server.
func New(kv jetstream.KeyValue, key, instance string, ttl time.Duration) *Lease {
	return &Lease{kv: kv, key: key, instance: instance, session: events.NewEventID(), ttl: ttl}
}

func (l *Lease) value(acquired time.Time) []byte {
	now := time.Now().UTC()
	if acquired.IsZero() {
		acquired = now
	}
	b, _ := json.Marshal(leaseRecord{Instance: l.instance, Session: l.session, AcquiredAt: acquired, RenewedAt: now})
	return b
}

// TryAcquire takes the lease if nobody holds it (or we still do). It
// returns false, nil when another replica holds it.
func (l *Lease) TryAcquire(ctx context.Context) (bool, error) {
	rev, err := l.kv.Create(ctx, l.key, l.value(time.Time{}))
	if err == nil {
		l.rev, l.holder = rev, l.instance
		return true, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return false, fmt.Errorf("acquire lease %s: %w", l.key, err)
	}
	e, err := l.kv.Get(ctx, l.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil // expired just now: the next attempt may win
	}
	if err != nil {
		return false, fmt.Errorf("read lease %s: %w", l.key, err)
	}
	var rec leaseRecord
	_ = json.Unmarshal(e.Value(), &rec)
	l.holder = rec.Instance
	if rec.Session != l.session {
		return false, nil
	}
	// Still ours (a renewal failed but the value did not expire and nobody
	// else wrote): take it back, revision-checked.
	rev, err = l.kv.Update(ctx, l.key, l.value(rec.AcquiredAt), e.Revision())
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			return false, nil
		}
		return false, fmt.Errorf("reclaim lease %s: %w", l.key, err)
	}
	l.rev = rev
	return true, nil
}

// Free reports whether nobody holds the lease now (its key is absent or
// deleted), without taking it.
func (l *Lease) Free(ctx context.Context) (bool, error) {
	_, err := l.kv.Get(ctx, l.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("read lease %s: %w", l.key, err)
	}
	return false, nil
}

// Renew extends a held lease. Any error means the lease may be lost.
func (l *Lease) Renew(ctx context.Context) error {
	rev, err := l.kv.Update(ctx, l.key, l.value(time.Time{}), l.rev)
	if err != nil {
		return fmt.Errorf("%w: renew %s at revision %d: %w", ErrLost, l.key, l.rev, err)
	}
	l.rev = rev
	return nil
}

// Release gives a held lease up so a standby takes over without waiting
// for the TTL. It deletes only our own revision.
func (l *Lease) Release(ctx context.Context) error {
	if err := l.kv.Delete(ctx, l.key, jetstream.LastRevision(l.rev)); err != nil {
		return fmt.Errorf("release lease %s: %w", l.key, err)
	}
	return nil
}

// Holder is the holder a failed TryAcquire saw, for logs.
func (l *Lease) Holder() string { return l.holder }

// Revision is the revision of our last write while held: it tells one
// leadership term from the next.
func (l *Lease) Revision() uint64 { return l.rev }

// Session is random per process, so a restarted replica never mistakes an
// old lease for its own.
func (l *Lease) Session() string { return l.session }
