package lease

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

func leaseBucket(t *testing.T, ttl time.Duration) jetstream.KeyValue {
	t.Helper()
	ns := testsupport.StartNATS(t)
	_, js := ns.Connect(t)
	kv, err := js.CreateKeyValue(testsupport.Context(t), jetstream.KeyValueConfig{Bucket: "LEASE_TEST", TTL: ttl, History: 1})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func mustAcquire(t *testing.T, l *Lease, want bool) {
	t.Helper()
	got, err := l.TryAcquire(testsupport.Context(t))
	if err != nil {
		t.Fatalf("%s: tryAcquire: %v", l.instance, err)
	}
	if got != want {
		t.Fatalf("%s: tryAcquire = %v, want %v", l.instance, got, want)
	}
}

func TestLeaseIsExclusiveAndExpires(t *testing.T) {
	const ttl = time.Second
	kv := leaseBucket(t, ttl)
	one := New(kv, "db.coll", "one", ttl)
	two := New(kv, "db.coll", "two", ttl)
	ctx := testsupport.Context(t)

	mustAcquire(t, one, true)
	mustAcquire(t, two, false)
	if two.holder != "one" {
		t.Errorf("two sees holder %q, want one", two.holder)
	}
	// Renewing keeps it past the TTL.
	for range 4 {
		time.Sleep(ttl / 3)
		if err := one.Renew(ctx); err != nil {
			t.Fatalf("renew: %v", err)
		}
	}
	mustAcquire(t, two, false)

	// one stops renewing (dies): its value ages out and two takes over.
	testsupport.Eventually(t, "two acquires after the TTL", func() bool {
		ok, err := two.TryAcquire(ctx)
		return err == nil && ok
	})
	// The stale leader cannot renew: its revision is gone.
	if err := one.Renew(ctx); !errors.Is(err, ErrLost) {
		t.Fatalf("stale renew = %v, want ErrLost", err)
	}
	mustAcquire(t, one, false)
}

func TestLeaseReclaimsItsOwnValueOnly(t *testing.T) {
	const ttl = 5 * time.Second
	kv := leaseBucket(t, ttl)
	ctx := testsupport.Context(t)
	one := New(kv, "k", "one", ttl)
	mustAcquire(t, one, true)

	// A renewal failed (say, a timeout) but the value is still ours:
	// the same process takes it back, revision-checked.
	one.rev = 999
	if err := one.Renew(ctx); !errors.Is(err, ErrLost) {
		t.Fatalf("renew at a wrong revision = %v, want ErrLost", err)
	}
	mustAcquire(t, one, true)
	if err := one.Renew(ctx); err != nil {
		t.Fatalf("renew after reclaim: %v", err)
	}

	// A restarted replica with the same instance name is another session.
	restarted := New(kv, "k", "one", ttl)
	mustAcquire(t, restarted, false)
}

func TestLeaseReleaseHandsOverAtOnce(t *testing.T) {
	const ttl = time.Minute
	kv := leaseBucket(t, ttl)
	ctx := testsupport.Context(t)
	one := New(kv, "k", "one", ttl)
	two := New(kv, "k", "two", ttl)
	mustAcquire(t, one, true)
	mustAcquire(t, two, false)
	if err := one.Release(ctx); err != nil {
		t.Fatal(err)
	}
	mustAcquire(t, two, true)
	// Releasing is revision-checked: the old holder cannot delete the new
	// holder's lease.
	if err := one.Release(ctx); err == nil {
		t.Fatal("stale release succeeded")
	}
	if err := two.Renew(ctx); err != nil {
		t.Fatalf("renew after a stale release: %v", err)
	}
}
