package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/internal/mongostandin"
	"github.com/customdata-worker/customdata-worker/issuer"
)

// harness holds the processes and clients of one run.
type harness struct {
	cfg  Config
	logf func(string, ...any)
	nats *natsCluster
	// auth: the NATS users every process logs in as; keys: the event
	// signing keys.
	auth    *natsAuth
	keys    *eventKeys
	workers []*workerProcess
	issuer  *issuerProcess
	standin *mongostandin.StandIn
	uri     string // MongoDB, for the harness itself and the application's writes
	// proxy stands between MongoDB and the worker replicas and issuers,
	// who connect at cutURI (uri when there is no proxy: see proxiedURI).
	proxy  *mongoProxy
	cutURI string
	nc     *nats.Conn
	js     jetstream.JetStream
	client *mongo.Client
	coll   *mongo.Collection
}

func (h *harness) canCutMongo() bool { return h.proxy != nil }

func (h *harness) start(ctx context.Context) error {
	cfg := h.cfg
	h.uri = cfg.MongoURI
	if h.uri == "" {
		s, err := mongostandin.Start(ctx)
		if err != nil {
			return fmt.Errorf("start the MongoDB stand-in: %w", err)
		}
		h.standin, h.uri = s, s.URI()
	}
	h.cutURI = h.uri
	if _, ok := proxiedURI(h.uri, "127.0.0.1:1"); ok {
		p, err := startMongoProxy(upstreamAddr(h.uri))
		if err != nil {
			return fmt.Errorf("start the MongoDB proxy: %w", err)
		}
		h.proxy = p
		h.cutURI, _ = proxiedURI(h.uri, p.addr())
	}
	client, err := mongo.Connect(options.Client().ApplyURI(h.uri).SetTimeout(5 * time.Second))
	if err != nil {
		return err
	}
	h.client = client
	h.coll = client.Database(database).Collection(collection)
	_ = h.coll.Database().Drop(ctx)
	if h.auth, err = loadNATSAuth(cfg.NATSConf); err != nil {
		return err
	}
	if h.keys, err = newEventKeys(cfg.Dir); err != nil {
		return err
	}
	n, err := newNATSCluster(cfg.NATSServerBin, cfg.Dir, cfg.NATSNodes, h.auth)
	if err != nil {
		return err
	}
	h.nats = n
	if err := n.startAll(ctx); err != nil {
		return err
	}
	nc, err := h.auth.connect(n.url, harnessUser)
	if err != nil {
		return err
	}
	h.nc = nc
	if h.js, err = jetstream.New(nc); err != nil {
		return err
	}
	if n.clustered() {
		// The replicas start once every node takes part in JetStream: an
		// R3 stream created before is refused ("no suitable peers").
		if err := h.waitForPeers(ctx, time.Minute); err != nil {
			return err
		}
	}
	for i := range cfg.Replicas {
		port, err := freePort()
		if err != nil {
			return err
		}
		name := "worker-" + strconv.Itoa(i+1)
		env := append(os.Environ(),
			"CUSTOMDATA_NATS_URL="+n.url,
			"CUSTOMDATA_MONGODB_URI="+h.cutURI,
			"CUSTOMDATA_MONGODB_DATABASE="+database,
			"CUSTOMDATA_MONGODB_COLLECTION="+collection,
			"CUSTOMDATA_USER_ID_FIELD="+userIDField,
			"CUSTOMDATA_ACK_WAIT="+ackWait.String(),
			"CUSTOMDATA_LEASE_TTL="+leaseTTL.String(),
			"CUSTOMDATA_HTTP_ADDR=127.0.0.1:"+strconv.Itoa(port),
			"CUSTOMDATA_LOG_FORMAT=json",
			"CUSTOMDATA_STREAM_REPLICAS="+strconv.Itoa(len(n.nodes)),
			"CUSTOMDATA_NOTIFIER_PARTITIONS="+strconv.Itoa(cfg.Partitions),
			"CUSTOMDATA_TRUSTED_SIGNERS="+h.keys.trustedSigners(),
		)
		env = append(env, h.auth.clientEnv("CUSTOMDATA", workerUser)...)
		w := &workerProcess{process: newProcess(name, cfg.WorkerBin, nil, env, cfg.Dir),
			metricsURL: "http://127.0.0.1:" + strconv.Itoa(port) + "/metrics"}
		if err := w.start(); err != nil {
			return err
		}
		h.workers = append(h.workers, w)
	}
	// The replicas provision the streams; wait for them.
	deadline := time.Now().Add(time.Minute)
	for {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err1 := h.js.Stream(sctx, "AUTH_EVENTS")
		_, err2 := h.js.Stream(sctx, "CUSTOMDATA_NOTICES")
		cancel()
		if err1 == nil && err2 == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the replicas did not provision their streams within a minute: %w (logs in %s)", errors.Join(err1, err2), cfg.Dir)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// restoreAll brings every process back: MongoDB listening, NATS up, every
// replica running and not stopped.
func (h *harness) restoreAll(ctx context.Context) error {
	if h.proxy != nil {
		h.proxy.setCut(false)
	}
	for _, n := range h.nats.nodes {
		if n.exited() {
			if err := n.startAndWait(ctx); err != nil {
				return err
			}
		}
	}
	for _, w := range h.workers {
		_ = w.signal(sigCONT)
		if w.exited() {
			h.logf("chaos: %s had exited on its own; restarting (see %s)", w.name, w.log)
			if err := w.start(); err != nil {
				return err
			}
		}
	}
	if h.issuer != nil && h.issuer.exited() {
		h.logf("chaos: the reference issuer had exited on its own; restarting (see %s)", h.issuer.log)
		return h.issuer.start()
	}
	return nil
}

func (h *harness) close() {
	if h.issuer != nil {
		h.issuer.stop(10 * time.Second)
	}
	for _, w := range h.workers {
		w.stop(10 * time.Second)
	}
	if h.nc != nil {
		h.nc.Close()
	}
	if h.nats != nil {
		h.nats.stop(5 * time.Second)
	}
	if h.client != nil {
		_ = h.client.Disconnect(context.Background())
	}
	if h.proxy != nil {
		h.proxy.close()
	}
	if h.standin != nil {
		_ = h.standin.Close()
	}
}

// waitCount waits until the collection holds n documents.
func (h *harness) waitCount(ctx context.Context, n int64, within time.Duration) error {
	deadline := time.Now().Add(within)
	var got int64
	for time.Now().Before(deadline) {
		c, err := h.coll.CountDocuments(ctx, bson.D{})
		if err == nil {
			if got = c; got == n {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%d documents after %s, want %d", got, within, n)
}

// startIssuer runs an issuer cache that follows notices on its own NATS
// connection, as an issuer process would (as nats.conf's user issuer).
func (h *harness) startIssuer(ctx context.Context) (*issuer.Cache, func(), error) {
	nc, err := h.auth.connect(h.nats.url, issuerUser)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, err
	}
	// MongoDB through the proxy, as the worker replicas reach it.
	client, err := mongo.Connect(options.Client().ApplyURI(h.cutURI))
	if err != nil {
		return nil, nil, err
	}
	src, err := issuer.NewSource(client, issuer.SourceConfig{Database: database, Collection: collection, UserIDField: userIDField})
	if err != nil {
		_ = client.Disconnect(ctx)
		return nil, nil, err
	}
	// Its log goes beside the processes' (issuer.log): when a check of it
	// fails, that is what tells why.
	logFile, err := os.Create(filepath.Join(h.cfg.Dir, "issuer.log"))
	if err != nil {
		_ = client.Disconnect(ctx)
		return nil, nil, err
	}
	log := zerolog.New(logFile).With().Timestamp().Str("app", "chaos-issuer").Logger()
	cache, err := issuer.NewCache(src, issuer.CacheConfig{}, issuer.WithNotices(js, issuer.NoticeConfig{}), issuer.WithLogger(log))
	if err != nil {
		_ = logFile.Close()
		return nil, nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := cache.Run(rctx); err != nil {
			h.logf("chaos: issuer cache stopped: %v", err)
		}
	}()
	stop := func() {
		cancel()
		<-done
		nc.Close()
		_ = client.Disconnect(context.Background())
		_ = logFile.Close()
	}
	for deadline := time.Now().Add(30 * time.Second); !cache.Following(); {
		if time.Now().After(deadline) {
			stop()
			return nil, nil, errors.New("the issuer did not start following notices within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cache, stop, nil
}
