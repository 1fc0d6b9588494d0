package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/embeddednats"
	"github.com/customdata-worker/customdata-worker/internal/mongostandin"
)

// runDemo starts an embedded NATS server, MongoDB (MONGODB_URI, else the
// in-memory stand-in), the worker (its binary, on its environment) and this
// issuer, then plays the loop an app sees: login, the worker's lastLogin
// write, an outside write, a delete — each followed by a refresh whose
// token shows the change, with the measured time from commit to refresh.
func runDemo(ctx context.Context, workerBin string, stdout, stderr io.Writer) error {
	if _, err := os.Stat(workerBin); err != nil {
		return fmt.Errorf("worker binary %s: %w (run `make build`)", workerBin, err)
	}
	dir, err := os.MkdirTemp("", "issuer-demo-nats-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ns, err := embeddednats.Start(embeddednats.Options{StoreDir: dir})
	if err != nil {
		return err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()

	uri := os.Getenv("MONGODB_URI")
	if uri == "" {
		fmt.Fprintln(stdout, "No MONGODB_URI: starting the in-memory MongoDB stand-in (mongo-java-server).")
		s, err := mongostandin.Start(ctx)
		if err != nil {
			return fmt.Errorf("start the MongoDB stand-in (needs Java 17 and `make standin`): %w", err)
		}
		defer s.Close()
		uri = s.URI()
	}
	db := fmt.Sprintf("issuer_demo_%d", time.Now().Unix())
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return err
	}
	defer client.Disconnect(context.Background())
	// Deferred before the worker starts, so it runs after the worker has
	// stopped: a drop under a running worker would be a "collection
	// dropped" flush-all and warnings, not the end of a demo.
	defer client.Database(db).Drop(context.Background())

	w, err := startWorker(workerBin, map[string]string{
		"CUSTOMDATA_NATS_URL": ns.ClientURL(), "CUSTOMDATA_MONGODB_URI": uri, "CUSTOMDATA_MONGODB_DATABASE": db,
		"CUSTOMDATA_HTTP_ADDR": "", "CUSTOMDATA_LOG_LEVEL": "warn", "CUSTOMDATA_LOG_FORMAT": "console",
	}, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = w.stop() }()

	cfg, err := loadConfigWith(func(c *Config) {
		c.NATSURL, c.MongoURI, c.Database, c.HTTPAddr = ns.ClientURL(), uri, db, "127.0.0.1:0"
		if os.Getenv(envPrefix+"_LOG_LEVEL") == "" {
			c.LogLevel = "warn"
		}
		c.LogFormat = "console"
		// One issuer living as long as the demo: a key of its own is
		// right here (ISSUER_SIGNING_KEY_FILE, if set, is still used).
		c.DevEphemeralKey = true
	})
	issuerCtx, stopIssuer := context.WithCancel(ctx)
	defer stopIssuer()
	ready, done := make(chan running, 1), make(chan error, 1)
	go func() { done <- runIssuer(issuerCtx, cfg, newLogger(cfg, stderr), ready) }()
	var app running
	select {
	case app = <-ready:
	case err := <-done:
		return fmt.Errorf("issuer did not start: %w", err)
	}
	defer func() { stopIssuer(); <-done }()

	coll := client.Database(db).Collection(cfg.Collection)

	fmt.Fprintf(stdout, "Worker (%s) and reference issuer (%s) running on embedded NATS; collection %s.%s\n", workerBin, app.URL, db, cfg.Collection)
	if err := poll(ctx, 60*time.Second, func() bool { return app.Cache.Following() }); err != nil {
		return errors.New("the issuer's cache never followed the worker's notice stream")
	}
	api, err := newAPIClient(ctx, app.URL, cfg.TokenIssuer, cfg.TokenAudience)
	if err != nil {
		return err
	}
	return playLoop(ctx, stdout, api, coll, cfg.UserIDField)
}

// playLoop is the demo's scenario.
func playLoop(ctx context.Context, out io.Writer, api *apiClient, coll *mongo.Collection, field string) error {
	user := "grace.hopper+" + events.NewEventID()[:6] + "@example.com"
	filter := bson.D{{Key: field, Value: user}}
	show := func(label string, c tokenClaims) {
		fmt.Fprintf(out, "  %s custom_data = %s\n", label, claimsLine(c))
	}

	fmt.Fprintf(out, "\n1. The app creates %s's document; the user logs in (POST /login)\n", user)
	if _, err := coll.InsertOne(ctx, bson.D{{Key: field, Value: user}, {Key: "plan", Value: "free"}}); err != nil {
		return err
	}
	loginAt := time.Now()
	tokA, a, err := api.login(ctx, user, "local-userpass")
	if err != nil {
		return err
	}
	show("token A:", a)

	fmt.Fprintln(out, "\n2. The worker applies the LOGIN (sets lastLogin); its notice drops the issuer's cache")
	var b tokenClaims
	if err := poll(ctx, 15*time.Second, func() bool {
		_, b, err = api.refresh(ctx, tokA, false)
		return err == nil && b.field("lastLogin") != ""
	}); err != nil {
		return fmt.Errorf("no refresh showed lastLogin: %v", err)
	}
	fmt.Fprintf(out, "  ✓ refresh %s after POST /login shows lastLogin (event → worker write → notice → refresh)\n", ms(time.Since(loginAt)))
	show("token B:", b)

	fmt.Fprintln(out, "\n3. The app changes the plan directly in MongoDB; the next refresh shows it (no TTL)")
	if _, err := coll.UpdateOne(ctx, filter, bson.D{{Key: "$set", Value: bson.D{{Key: "plan", Value: "pro"}}}}); err != nil {
		return err
	}
	committed := time.Now()
	var c tokenClaims
	if err := poll(ctx, 15*time.Second, func() bool {
		_, c, err = api.refresh(ctx, tokA, false)
		return err == nil && c.field("plan") == "pro"
	}); err != nil {
		return fmt.Errorf("no refresh showed the outside write: %v", err)
	}
	fmt.Fprintf(out, "  ✓ MongoDB commit → refresh that reflects it: %s\n", ms(time.Since(committed)))
	show("before:", b)
	show("after: ", c)

	fmt.Fprintln(out, "\n4. The document is deleted; the next refresh carries no custom data")
	if _, err := coll.DeleteOne(ctx, filter); err != nil {
		return err
	}
	committed = time.Now()
	var d tokenClaims
	if err := poll(ctx, 15*time.Second, func() bool {
		_, d, err = api.refresh(ctx, tokA, false)
		return err == nil && d.CustomData == nil
	}); err != nil {
		return fmt.Errorf("no refresh dropped the deleted document: %v", err)
	}
	fmt.Fprintf(out, "  ✓ MongoDB commit → refresh that reflects it: %s\n", ms(time.Since(committed)))
	show("token D:", d)
	fmt.Fprintln(out, "\nDone: every change reached the next token refresh without a TTL.")
	return nil
}

// claimsLine prints custom_data compactly, without _id.
func claimsLine(c tokenClaims) string {
	if c.CustomData == nil {
		return "(none)"
	}
	keys := make([]string, 0, len(c.CustomData))
	for k := range c.CustomData {
		if k != "_id" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%s", k, c.field(k)))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// poll calls done until it reports true, ctx ends, or timeout passes.
// It polls every millisecond: the demo measures how soon a change shows.
func poll(ctx context.Context, timeout time.Duration, done func() bool) error {
	deadline := time.Now().Add(timeout)
	for !done() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}
