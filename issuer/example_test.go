package issuer_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"golang.org/x/sync/errgroup"

	"github.com/customdata-worker/customdata-worker/internal/embeddednats"
	"github.com/customdata-worker/customdata-worker/internal/mongostandin"
	"github.com/customdata-worker/customdata-worker/issuer"
)

// An issuer reads a user's custom data through a cache that the worker's
// notices keep fresh. (The example brings its own NATS and MongoDB; an
// issuer passes its existing connections.)
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, js, db, stop, err := exampleServers(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	_, _ = client.Database(db).Collection("custom_user_data").InsertOne(ctx,
		bson.D{{Key: "userId", Value: "ada"}, {Key: "plan", Value: "pro"}})

	// Zero values are the worker's defaults (collection custom_user_data,
	// field userId, 16 KiB flagged); the example uses its own database.
	src, err := issuer.NewSource(client, issuer.SourceConfig{Database: db})
	if err != nil {
		fmt.Println(err)
		return
	}
	cache, err := issuer.NewCache(src, issuer.CacheConfig{MaxEntries: 10_000}, issuer.WithNotices(js, issuer.NoticeConfig{}))
	if err != nil {
		fmt.Println(err)
		return
	}
	prometheus.NewRegistry().MustRegister(cache.Collectors()...)
	// Run follows the notices until ctx ends; it is owned like any other
	// part of the server: stopped, waited for, and its error looked at.
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return cache.Run(ctx) })
	defer func() {
		cancel()
		if err := g.Wait(); err != nil {
			fmt.Println(err)
		}
	}()

	data, err := cache.Get(ctx, "ada")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(data.Found(), data.Lookup("plan").StringValue())
	// Output: true pro
}

// exampleServers starts an embedded NATS with the worker's notice stream,
// and MongoDB (MONGODB_URI, else the stand-in).
func exampleServers(ctx context.Context) (*mongo.Client, jetstream.JetStream, string, func(), error) {
	dir, err := os.MkdirTemp("", "issuer-example-*")
	if err != nil {
		return nil, nil, "", nil, err
	}
	ns, err := embeddednats.Start(embeddednats.Options{StoreDir: dir})
	if err != nil {
		return nil, nil, "", nil, err
	}
	stops := []func(){func() { ns.Shutdown(); ns.WaitForShutdown(); _ = os.RemoveAll(dir) }}
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		stop()
		return nil, nil, "", nil, err
	}
	stops = append(stops, nc.Close)
	js, _ := jetstream.New(nc)
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: issuer.DefaultNoticeStream, Subjects: []string{"customdata.invalidated.>"}}); err != nil {
		stop()
		return nil, nil, "", nil, err
	}
	uri := os.Getenv("MONGODB_URI")
	if uri == "" {
		s, err := mongostandin.Start(ctx)
		if err != nil {
			stop()
			return nil, nil, "", nil, err
		}
		stops = append(stops, func() { _ = s.Close() })
		uri = s.URI()
	}
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		stop()
		return nil, nil, "", nil, err
	}
	db := fmt.Sprintf("issuer_example_%d", time.Now().UnixNano()%1_000_000_000)
	stops = append(stops, func() {
		_ = client.Database(db).Drop(context.Background())
		_ = client.Disconnect(context.Background())
	})
	return client, js, db, stop, nil
}
