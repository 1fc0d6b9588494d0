package main

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/customdata-worker/customdata-worker/issuer"
)

// deadlineData records whether the context of each read had a deadline.
type deadlineData struct{ unbounded atomic.Int32 }

func (d *deadlineData) Get(ctx context.Context, _ string) (issuer.Data, error) {
	if _, ok := ctx.Deadline(); !ok {
		d.unbounded.Add(1)
	}
	return issuer.Data{}, nil
}

// With the cache off the data read is the Source's own, under the HTTP
// request's context, which has no deadline: the server bounds it, so a
// MongoDB reply lost on the way cannot hold the handler for ever.
func TestTokenRequestsBoundTheirDataRead(t *testing.T) {
	tok := devTokens(t, "ref", 15*time.Minute)
	data := &deadlineData{}
	srv := newTestServer(t, &server{data: data, tok: tok})
	d, _ := data.Get(context.Background(), "ada")
	data.unbounded.Store(0)
	current, _, err := tok.issue("ada", "p", d, tok.newSession())
	if err != nil {
		t.Fatal(err)
	}
	if status, body := postRefresh(t, srv.URL, current); status != http.StatusOK {
		t.Fatalf("refresh: %d %s", status, body)
	}
	if n := data.unbounded.Load(); n != 0 {
		t.Fatalf("%d data reads without a deadline", n)
	}
}
