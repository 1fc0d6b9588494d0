package authsync

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/triggers"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

func TestCustomDataDuplicatesFailByDefaultAndFirstInsertedWinsWhenAllowed(t *testing.T) {
	e := newAuthEnv(t, testsupport.MongoDB(t), func(e *authEnv) { e.data.AllowDuplicates = true })
	ctx := testsupport.Context(e.t)
	// Driver-generated ObjectIds grow with insertion order.
	var seeded []any
	for i, u := range []string{"dup-a", "dup-a", "dup-b", "dup-b", "dup-b", "single"} {
		res, err := e.coll.InsertOne(ctx, bson.M{"userId": u, "n": i})
		if err != nil {
			t.Fatal(err)
		}
		seeded = append(seeded, res.InsertedID)
	}

	strict := e.data
	strict.AllowDuplicates = false
	err := customdata.EnsureUserIndex(ctx, e.coll, strict, zerolog.Nop())
	if !errors.Is(err, customdata.ErrDuplicateUsers) {
		t.Fatalf("EnsureUserIndex over duplicates = %v, want customdata.ErrDuplicateUsers", err)
	}
	for _, want := range []string{`"dup-a"`, `"dup-b"`, "2 user ids", "remove or merge the later-inserted", "AllowDuplicates"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if strings.Contains(err.Error(), `"single"`) {
		t.Errorf("error names a user without duplicates: %v", err)
	}

	var logged bytes.Buffer
	if err := customdata.EnsureUserIndex(ctx, e.coll, e.data, zerolog.New(&logged)); err != nil {
		t.Fatalf("EnsureUserIndex with AllowDuplicates: %v", err)
	}
	if out := logged.String(); !strings.Contains(out, `"duplicated_users":2`) || !strings.Contains(out, "dup-a") || !strings.Contains(out, `"level":"warn"`) {
		t.Fatalf("warning = %s, want count and samples", out)
	}

	// Writes go to the first-inserted document of each user.
	cfg := triggers.DefaultConfig()
	e.set, err = triggers.NewSet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.start()
	at := authBaseTime()
	e.publish(e.event(events.OperationLogin, "dup-b", at))
	e.publish(e.event(events.OperationCreate, "dup-a", at)) // must not add a third document
	e.waitSettled()
	docs := e.docs("dup-b")
	if len(docs) != 3 {
		t.Fatalf("dup-b has %d documents, want 3", len(docs))
	}
	for _, d := range docs {
		hasLogin := d["lastLogin"] != nil
		if first := d["_id"] == seeded[2]; hasLogin != first {
			t.Fatalf("lastLogin written to %v (n=%v), want only the first-inserted document %v", d["_id"], d["n"], seeded[2])
		}
	}
	if n := len(e.docs("dup-a")); n != 2 {
		t.Fatalf("CREATE for a duplicated user left %d documents, want 2", n)
	}
	e.publish(e.event(events.OperationDelete, "dup-b", at))
	e.waitFor("every dup-b document deleted", func() bool { return len(e.docs("dup-b")) == 0 })
}
