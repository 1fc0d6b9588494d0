package testsupport

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Wait is how long a test waits for something that should happen: long
// enough for a shared, noisy 2-core machine, short enough to fail a hung
// test well within the suite's budget.
const Wait = time.Minute

// Context is a context for one test, ended after Wait or when the test
// ends.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	t.Cleanup(cancel)
	return ctx
}

// Eventually polls cond until it holds, failing the test after Wait.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, Wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ExtJSON parses a relaxed Extended JSON fixture into BSON.
func ExtJSON(t testing.TB, s string) bson.Raw {
	t.Helper()
	var raw bson.Raw
	if err := bson.UnmarshalExtJSON([]byte(s), false, &raw); err != nil {
		t.Fatalf("fixture %s: %v", s, err)
	}
	return raw
}
