package bridge

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/issuer"
)

// planOf calls the Supabase hook and returns custom_data.plan ("" when
// absent), failing on anything but 200.
func planOf(t *testing.T, s *Server, sec string, body []byte) string {
	t.Helper()
	w := serve(s, supabaseCall(t, body, time.Now(), sec))
	claims := supabaseAnswer(t, w, w.Body.Bytes())
	cd, _ := claims["custom_data"].(map[string]any)
	p, _ := cd["plan"].(string)
	return p
}

// Against the real NATS server and MongoDB (the stand-in): the hook answers
// from the issuer cache, a change to the document reaches the next answer
// when its notice arrives (published here the way the worker publishes
// it, README "Notice contract"; cmd/customdata-bridge's end-to-end test
// has the worker produce it), and a cached user is still answered while
// MongoDB is down, while an uncached one gets the documented failure.
func TestHookFollowsNoticesAndAnswersFromTheCache(t *testing.T) {
	ns := testsupport.StartNATS(t)
	_, js := ns.Connect(t)
	ctx := testsupport.Context(t)
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: events.DefaultNoticeStream, Subjects: []string{events.DefaultNoticePrefix + ".>"}, MaxAge: time.Hour,
	}); err != nil {
		t.Fatal(err)
	}
	m := testsupport.PrivateMongoDB(t)
	client := m.Client(t)
	db := testsupport.DatabaseName(t)
	t.Cleanup(func() { _ = client.Database(db).Drop(context.Background()) })
	coll := client.Database(db).Collection(issuer.DefaultCollection)
	res, err := coll.InsertOne(ctx, bson.D{{Key: "userId", Value: supabaseUser}, {Key: "plan", Value: "free"}})
	if err != nil {
		t.Fatal(err)
	}
	docID := res.InsertedID.(bson.ObjectID).Hex()

	src, err := issuer.NewSource(client, issuer.SourceConfig{Database: db})
	if err != nil {
		t.Fatal(err)
	}
	// No worker here, so no heartbeats: keep caching without them.
	cache, err := issuer.NewCache(src, issuer.CacheConfig{ReadTimeout: time.Second},
		issuer.WithNotices(js, issuer.NoticeConfig{LeaderTimeout: -1}))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(cache.Collectors()...)
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cache.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	testsupport.Eventually(t, "the cache follows the notices", cache.Following)

	sec := secret(t)
	s, err := New(cache, Config{Timeout: time.Second}, WithSupabase(verifier(t, sec)))
	if err != nil {
		t.Fatal(err)
	}
	login := fixture(t, "supabase/custom-access-token.json")
	if p := planOf(t, s, sec, login); p != "free" {
		t.Fatalf("first answer: plan %q", p)
	}
	hits := func() float64 { return testsupport.Metric(t, reg, "customdata_issuer_cache_hits_total", nil) }
	before := hits()
	if p := planOf(t, s, sec, login); p != "free" || hits() != before+1 {
		t.Fatalf("second answer: plan %q, cache hits %v → %v", p, before, hits())
	}

	// Changed in MongoDB: until its notice arrives the cache answers what
	// it holds (so it is the notice, and nothing else, that refreshes it).
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: res.InsertedID}}, bson.D{{Key: "$set", Value: bson.D{{Key: "plan", Value: "pro"}}}}); err != nil {
		t.Fatal(err)
	}
	if p := planOf(t, s, sec, login); p != "free" {
		t.Fatalf("before the notice: plan %q, want the cached free", p)
	}
	notice, _ := json.Marshal(events.Notice{SchemaVersion: events.NoticeSchemaVersion, Kind: events.NoticeUser, UserID: supabaseUser,
		DocumentID: docID, Operation: "update", PublishedAt: time.Now().UTC()})
	if _, err := js.Publish(ctx, events.UserNoticeSubject(events.DefaultNoticePrefix, supabaseUser), notice); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, "the notice's change reaches the hook's answer", func() bool { return planOf(t, s, sec, login) == "pro" })

	if m.StandIn == nil {
		return // a real MONGODB_URI is not ours to stop
	}
	if p := planOf(t, s, sec, login); p != "pro" { // cached again
		t.Fatalf("plan %q", p)
	}
	if err := m.StandIn.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.StandIn.Start() })
	if p := planOf(t, s, sec, login); p != "pro" {
		t.Fatalf("cached user while MongoDB is down: plan %q", p)
	}
	other := []byte(strings.ReplaceAll(string(login), supabaseUser, "0d7f7c2e-7a52-4ac4-9d3f-8a0ef1a1e111"))
	w := serve(s, supabaseCall(t, other, time.Now(), sec))
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("uncached user while MongoDB is down: status %d: %s", w.Code, w.Body)
	}
	wantError(t, w.Body.Bytes(), 503)
}

// Documents over the size limit, read by a real Source: flagged (and
// kept) by default, left out but flagged with OversizeRefuse.
func TestOversizeDocuments(t *testing.T) {
	m := testsupport.MongoDB(t)
	client := m.Client(t)
	db := testsupport.DatabaseName(t)
	t.Cleanup(func() { _ = client.Database(db).Drop(context.Background()) })
	ctx := testsupport.Context(t)
	if _, err := client.Database(db).Collection(issuer.DefaultCollection).InsertOne(ctx,
		bson.D{{Key: "userId", Value: supabaseUser}, {Key: "plan", Value: "pro"}, {Key: "blob", Value: strings.Repeat("x", 200)}}); err != nil {
		t.Fatal(err)
	}
	sec := secret(t)
	for _, tc := range []struct {
		policy   issuer.OversizePolicy
		withData bool
	}{{issuer.OversizeFlag, true}, {issuer.OversizeRefuse, false}} {
		src, err := issuer.NewSource(client, issuer.SourceConfig{Database: db, OversizeBytes: 64, Oversize: tc.policy})
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(src, Config{}, WithSupabase(verifier(t, sec)), WithGeneric([]string{"tok"}))
		if err != nil {
			t.Fatal(err)
		}
		w := serve(s, supabaseCall(t, fixture(t, "supabase/custom-access-token.json"), time.Now(), sec))
		claims := supabaseAnswer(t, w, w.Body.Bytes())
		if _, has := claims["custom_data"]; has != tc.withData || claims["custom_data_oversize"] != true {
			t.Fatalf("policy %d: custom_data present %v, oversize %v", tc.policy, has, claims["custom_data_oversize"])
		}
		g := object(t, serve(s, genericCall(supabaseUser, "tok")).Body.Bytes())
		if g["oversize"] != true || (g["custom_data"] != nil) != tc.withData {
			t.Fatalf("policy %d: generic answer %v", tc.policy, g)
		}
	}
}
