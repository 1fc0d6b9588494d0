package notify

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/outage"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// TestClassifyFeedError: only errors that say the position is gone
// or invalid are discontinuities; everything an election, a restart or load
// produces on the aggregate (which never carries ResumableChangeStreamError)
// is retried from the checkpoint.
func TestClassifyFeedError(t *testing.T) {
	if !errors.Is(serverError(50, "MaxTimeMSExpired"), context.DeadlineExceeded) {
		t.Fatal("serverError(50) does not wrap context.DeadlineExceeded as driver v2 does")
	}
	cmd := func(code int32, labels ...string) error {
		return fmt.Errorf("wrapped: %w", serverError(code, "", labels...))
	}
	for _, tc := range []struct {
		name string
		err  error
		want feedErrorClass
	}{
		{"history lost", cmd(286, "NonResumableChangeStreamError"), feedHistoryLost},
		{"fatal: resume point gone (4.0-4.2)", cmd(280), feedHistoryLost},
		{"3.6: resume point may no longer be in the oplog", cmd(40576), feedHistoryLost},
		{"3.6-4.0: resume token not found", cmd(40585), feedHistoryLost},
		{"invalid resume token", cmd(260), feedTokenInvalid},
		{"unknown expression ($bsonSize on old servers)", cmd(168), feedPipelineUnsupported},
		// Driver v2 makes a server's MaxTimeMSExpired wrap
		// context.DeadlineExceeded: it is still the server's answer.
		{"max time expired", cmd(50), feedTimedOut},
		{"max time expired, unwrapped", serverError(50, "MaxTimeMSExpired"), feedTimedOut},
		{"exceeded time limit (mongos)", cmd(262), feedTimedOut},
		{"majority read concern not available yet", cmd(134), feedTransient},
		{"interrupted", cmd(11601), feedTransient},
		{"query plan killed", cmd(175), feedTransient},
		{"election in progress", cmd(216), feedTransient},
		{"shutdown in progress", cmd(91), feedTransient},
		{"primary stepped down", cmd(189), feedTransient},
		{"not primary", cmd(10107), feedTransient},
		{"not primary, no secondaryOk", cmd(13435), feedTransient},
		{"stepping down", cmd(11602), feedTransient},
		{"cursor killed", cmd(237), feedTransient},
		// Access refused: an operator fixes it and the feed resumes from
		// the checkpoint; it must not count as an unreadable position.
		{"unauthorized", cmd(13), feedTransient},
		{"authentication failed", cmd(18), feedTransient},
		{"resumable label wins over the code", cmd(10334, "ResumableChangeStreamError"), feedTransient},
		{"network label", cmd(0, "NetworkError"), feedTransient},
		{"retryable label", cmd(0, "RetryableError"), feedTransient},
		{"deadline", context.DeadlineExceeded, feedTransient},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), feedTransient},
		{"client disconnected", mongo.ErrClientDisconnected, feedTransient},
		{"not a server error (server selection, I/O)", errors.New("boom"), feedTransient},
		// The stand-in answers a bogus resume token with "Unknown error"
		// and no code: retried, and past maxPositionRefusals identical
		// refusals at one position, a flush-all.
		{"server error without a code", cmd(0), feedRefused},
		{"event too large", cmd(10334), feedRefused},
		{"non-resumable label, unknown code", cmd(9999, "NonResumableChangeStreamError"), feedRefused},
	} {
		if got := classifyFeedError(tc.err); got != tc.want {
			t.Errorf("%s: class %s, want %s", tc.name, got, tc.want)
		}
	}
	if flushReasonForRefusedToken(feedHistoryLost) != events.FlushHistoryLost ||
		flushReasonForRefusedToken(feedTokenInvalid) != events.FlushBadCheckpoint {
		t.Error("flush reasons for refused tokens")
	}
}

// TestFeedPipelineOnTheServer runs both pipeline variants against
// the test server and maps what comes out, as the notifier would.
func TestFeedPipelineOnTheServer(t *testing.T) {
	m := testsupport.MongoDB(t)
	coll := m.Client(t).Database(testsupport.DatabaseName(t)).Collection("customdata")
	ctx := testsupport.Context(t)

	supported, conclusive := probeServerSize(ctx, coll)
	if supported || conclusive {
		t.Fatalf("probe on an empty collection = %v, %v; want inconclusive", supported, conclusive)
	}
	if _, err := coll.InsertOne(ctx, bson.M{"userId": "seed"}); err != nil {
		t.Fatal(err)
	}
	supported, conclusive = probeServerSize(ctx, coll)
	if !conclusive || supported != (m.StandIn == nil) {
		// Stand-in gap: no $bsonSize (InvalidPipelineOperator, 168).
		t.Fatalf("probe = supported %v, conclusive %v; want supported only on real MongoDB", supported, conclusive)
	}

	watch := func(serverSize bool) *mongo.ChangeStream {
		t.Helper()
		cs, err := coll.Watch(ctx, feedPipeline("userId", serverSize, partition{}),
			options.ChangeStream().SetFullDocument(options.UpdateLookup).SetMaxAwaitTime(time.Second))
		if err != nil {
			t.Fatalf("watch (server size %v): %v", serverSize, err)
		}
		t.Cleanup(func() { _ = cs.Close(context.Background()) })
		return cs
	}
	next := func(cs *mongo.ChangeStream) (bson.Raw, error) {
		t.Helper()
		deadline := time.Now().Add(noticeWait)
		for time.Now().Before(deadline) {
			if cs.TryNext(ctx) {
				return cs.Current, nil
			}
			if err := cs.Err(); err != nil {
				return nil, err
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatal("no change event")
		return nil, nil
	}

	sized := watch(true)
	local := watch(false)
	big := bson.M{"userId": "u1", "blob": string(make([]byte, 300))}
	if _, err := coll.InsertOne(ctx, big); err != nil {
		t.Fatal(err)
	}

	ev, err := next(sized)
	if m.StandIn != nil {
		// The stand-in accepts the pipeline at open and fails the first
		// event: the notifier reads that as "size in the worker".
		if classifyFeedError(err) != feedPipelineUnsupported {
			t.Fatalf("stand-in, sized pipeline: event %v, err %v; want InvalidPipelineOperator", ev, err)
		}
	} else {
		if err != nil {
			t.Fatalf("sized pipeline: %v", err)
		}
		mc := noticeMapper{prefix: "p", userIDField: "userId", oversizeBytes: 100}.mapChange(ev)
		if mc.DuplicateCheckUser != "u1" || !mc.Oversize || mc.Size < 300 {
			t.Fatalf("sized event maps to %+v", mc)
		}
		if doc, _ := ev.Lookup("fullDocument").DocumentOK(); doc == nil || doc.Lookup("blob").Type != 0 {
			t.Fatalf("projected fullDocument = %v, want only _id and userId", doc)
		}
	}

	ev, err = next(local)
	if err != nil {
		t.Fatalf("local pipeline: %v", err)
	}
	mc := noticeMapper{prefix: "p", userIDField: "userId", oversizeBytes: 100, measureFullDocument: true}.mapChange(ev)
	if mc.DuplicateCheckUser != "u1" || !mc.Oversize || mc.Size < 300 || mc.Notices[0].Notice.UserID != "u1" {
		t.Fatalf("local event maps to %+v", mc)
	}
}

// TestChangeStreamRefusesBogusResumeToken records what the server says to
// a token it cannot use: never a transient error, so the notifier flushes
// at once (invalid token, history lost) or after maxPositionRefusals
// identical refusals, instead of retrying forever.
func TestChangeStreamRefusesBogusResumeToken(t *testing.T) {
	m := testsupport.MongoDB(t)
	coll := m.Client(t).Database(testsupport.DatabaseName(t)).Collection("customdata")
	ctx := testsupport.Context(t)
	if _, err := coll.InsertOne(ctx, bson.M{"userId": "seed"}); err != nil {
		t.Fatal(err)
	}
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(bson.M{"_data": "zz-not-a-token"}))
	if err == nil {
		_ = cs.Close(ctx)
		t.Fatal("the server accepted a bogus resume token")
	}
	class := classifyFeedError(err)
	if class == feedTransient || class == feedPipelineUnsupported {
		t.Fatalf("bogus token: class %s (code %d): %v", class, outage.FirstCode(err), err)
	}
	t.Logf("bogus resume token: class %s, code %d", class, outage.FirstCode(err))
}
