package customdata

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/internal/outage"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// The stand-in builds indexes at once; it cannot show a build waiting for
// its commit quorum. The decision is asserted on the command the driver
// sends (command monitor): commit quorum "majority", so one member down
// does not block the build, and no maxTimeMS, since an interrupted
// createIndexes aborts the build on real MongoDB (4.4+).
func TestEnsureUserIndexAsksForMajorityCommitQuorumWithoutServerTimeLimit(t *testing.T) {
	m := testsupport.MongoDB(t)
	var mu sync.Mutex
	var cmds []event.CommandStartedEvent
	monitor := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		if e.CommandName == "createIndexes" {
			mu.Lock()
			cmds = append(cmds, *e)
			mu.Unlock()
		}
	}}
	client, err := mongo.Connect(options.Client().ApplyURI(m.URI).SetMonitor(monitor))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	coll := client.Database(testsupport.DatabaseName(t)).Collection("users")
	ctx := testsupport.Context(t)
	cfg := Config{Database: "d", Collection: "users"}
	if err := EnsureUserIndex(ctx, coll, cfg, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(cmds) != 1 {
		t.Fatalf("%d createIndexes commands, want 1", len(cmds))
	}
	cmd := cmds[0].Command
	if q, err := cmd.LookupErr("commitQuorum"); err != nil || q.StringValue() != "majority" {
		t.Fatalf("createIndexes commitQuorum = %v (%v), want \"majority\": %s", q, err, cmd)
	}
	if _, err := cmd.LookupErr("maxTimeMS"); err == nil {
		t.Fatalf("createIndexes carries maxTimeMS (an expiry would abort the build): %s", cmd)
	}
}

// TestEnsureUserIndexGivesUpAfterIndexTimeout: a createIndexes that does
// not return (a proxy withholds the reply, as a server waiting for its
// commit quorum would) ends after IndexTimeout with ErrIndexBuildTimeout
// saying what it waits for, instead of hanging startup. Before the fix the
// call waited for as long as its context allowed.
func TestEnsureUserIndexGivesUpAfterIndexTimeout(t *testing.T) {
	proxy := testsupport.StartMongoProxy(t, testsupport.MongoDB(t))
	proxy.Hold("createIndexes")
	client := (&testsupport.Mongo{URI: proxy.URI}).Client(t)
	coll := client.Database(testsupport.DatabaseName(t)).Collection("users")
	cfg := Config{Database: "d", Collection: "users", IndexTimeout: time.Second}

	done := make(chan error, 1)
	go func() { done <- EnsureUserIndex(context.Background(), coll, cfg, zerolog.Nop()) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(testsupport.Wait):
		t.Fatalf("EnsureUserIndex still waiting after %s with IndexTimeout 1s", testsupport.Wait)
	}
	if !errors.Is(err, ErrIndexBuildTimeout) || !outage.Is(err) {
		t.Fatalf("EnsureUserIndex = %v, want a transient ErrIndexBuildTimeout", err)
	}
	for _, want := range []string{"userId_unique", "commit quorum", "majority"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// Once the server answers, the next attempt succeeds.
	proxy.Hold("")
	ctx := testsupport.Context(t)
	fresh := (&testsupport.Mongo{URI: proxy.URI}).Client(t).Database(coll.Database().Name()).Collection("users")
	if err := EnsureUserIndex(ctx, fresh, cfg, zerolog.Nop()); err != nil {
		t.Fatalf("EnsureUserIndex after the server answers: %v", err)
	}
}
