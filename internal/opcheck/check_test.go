package opcheck_test

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/internal/opcheck"
	"github.com/customdata-worker/customdata-worker/internal/provision"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/triggers"
	"github.com/customdata-worker/customdata-worker/worker"
	"github.com/customdata-worker/customdata-worker/worker/authsync"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
	"github.com/customdata-worker/customdata-worker/worker/notify"
)

type fixture struct {
	t    *testing.T
	cfg  worker.Config
	coll *mongo.Collection
}

func newFixture(t *testing.T, natsURL string) *fixture {
	t.Helper()
	m := testsupport.MongoDB(t)
	set, err := triggers.NewSet(triggers.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	db := testsupport.DatabaseName(t)
	cfg := worker.Config{
		MongoURI: m.URI, NATS: worker.NATSConfig{URL: natsURL, Name: "customdata-worker"}, Notices: true, Triggers: set,
		Data: customdata.Config{Database: db},
	}
	return &fixture{t: t, cfg: cfg, coll: m.Client(t).Database(db).Collection(customdata.DefaultCollection)}
}

// provision creates everything the worker's startup creates.
func (f *fixture) provision() {
	t := f.t
	t.Helper()
	ctx := testsupport.Context(t)
	if err := customdata.EnsureUserIndex(ctx, f.coll, f.cfg.Data, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	nc, err := worker.ConnectNATS(f.cfg.NATS, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstreamNew(t, nc)
	create := f.cfg.Streams
	create.Mode = provision.Create
	c, err := authsync.New(js, f.coll, f.cfg.Triggers, f.cfg.Auth, authsync.WithData(f.cfg.Data), authsync.WithStreams(create))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := notify.New(js, f.coll.Database(), f.cfg.Notify, notify.WithData(f.cfg.Data), notify.WithStreams(create))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Provision(ctx); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) run() (opcheck.Report, string) {
	f.t.Helper()
	var progress bytes.Buffer
	rep := opcheck.Run(testsupport.Context(f.t), opcheck.Config{Worker: f.cfg, Timeout: 2 * time.Second, Progress: &progress})
	var out bytes.Buffer
	if err := rep.WriteText(&out); err != nil {
		f.t.Fatal(err)
	}
	f.t.Logf("check:\n%s", out.String())
	return rep, out.String()
}

func result(t *testing.T, rep opcheck.Report, name string) opcheck.Result {
	t.Helper()
	for _, r := range rep.Results {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no check %q in %+v", name, rep.Results)
	return opcheck.Result{}
}

func expect(t *testing.T, rep opcheck.Report, name string, st opcheck.Status, says string) {
	t.Helper()
	r := result(t, rep, name)
	if r.Status != st || !strings.Contains(r.Detail, says) {
		t.Errorf("%s = %s %q; want %s containing %q", name, r.Status, r.Detail, st, says)
	}
}

func TestCheckPassesOnAProvisionedDeployment(t *testing.T) {
	ns := testsupport.StartNATS(t)
	f := newFixture(t, ns.URL)
	f.cfg.Streams.Mode = provision.Verify
	f.provision()
	ctx := testsupport.Context(t)
	big := strings.Repeat("x", 20000)
	if _, err := f.coll.InsertMany(ctx, []any{
		bson.D{{Key: "userId", Value: "alice"}}, bson.D{{Key: "userId", Value: "bob"}, {Key: "blob", Value: big}},
	}); err != nil {
		t.Fatal(err)
	}
	rep, out := f.run()
	if !rep.OK || !strings.HasSuffix(out, "check passed: the worker would run\n") {
		t.Fatalf("check failed on a provisioned deployment:\n%s", out)
	}
	expect(t, rep, "NATS", opcheck.OK, "connected to nats://127.0.0.1:")
	expect(t, rep, "JetStream", opcheck.OK, "enabled")
	expect(t, rep, "auth-event streams and consumer", opcheck.OK, "AUTH_EVENTS, AUTH_EVENTS_DLQ and consumer customdata-worker present")
	expect(t, rep, "notice stream and buckets", opcheck.OK, "present with compatible settings")
	expect(t, rep, "unique user-id index", opcheck.OK, "userId_unique")
	expect(t, rep, "collection sample", opcheck.Warn, "1 documents above OVERSIZE_BYTES 16384")
	expect(t, rep, "MongoDB privileges", opcheck.OK, "tried")
}

func TestCheckNATSDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + l.Addr().String()
	l.Close() // nothing listens there now
	f := newFixture(t, url)
	rep, _ := f.run()
	if rep.OK {
		t.Fatal("check passed with NATS down")
	}
	expect(t, rep, "NATS", opcheck.Fail, "unreachable")
	expect(t, rep, "JetStream", opcheck.Skipped, "not connected")
	expect(t, rep, "unique user-id index", opcheck.Warn, "the worker builds userId_unique at startup")
}

func TestCheckMongoDBDownRedactsThePassword(t *testing.T) {
	ns := testsupport.StartNATS(t)
	f := newFixture(t, ns.URL)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	f.cfg.MongoURI = "mongodb://worker:s3cret-mongo-pw@" + addr + "/?directConnection=true"
	rep, out := f.run()
	if rep.OK {
		t.Fatal("check passed with MongoDB down")
	}
	expect(t, rep, "MongoDB", opcheck.Fail, "does not answer")
	expect(t, rep, "NATS", opcheck.OK, "connected")
	if strings.Contains(out, "s3cret-mongo-pw") {
		t.Fatalf("the report shows the password:\n%s", out)
	}
	// PROVISION=create (the default): missing streams are created at
	// startup, so they do not fail the check.
	expect(t, rep, "auth-event streams and consumer", opcheck.Warn, "PROVISION=create")
}

func TestCheckWrongNATSPassword(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true, Users: []*server.User{{Username: "worker", Password: "right-password"}}})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	f := newFixture(t, s.ClientURL())
	f.cfg.NATS.User, f.cfg.NATS.Password = "worker", "wrong-password"
	rep, out := f.run()
	expect(t, rep, "NATS", opcheck.Fail, "authentication refused")
	if rep.OK || strings.Contains(out, "wrong-password") {
		t.Fatalf("wrong password: ok=%v, or the password is shown:\n%s", rep.OK, out)
	}
	f.cfg.NATS.Password = "right-password"
	rep, _ = f.run()
	expect(t, rep, "NATS", opcheck.OK, "connected")
}

func TestCheckMissingStreamInVerifyMode(t *testing.T) {
	ns := testsupport.StartNATS(t)
	f := newFixture(t, ns.URL)
	f.cfg.Streams.Mode = provision.Verify
	f.provision()
	nc, err := worker.ConnectNATS(f.cfg.NATS, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstreamNew(t, nc)
	if err := js.DeleteStream(context.Background(), authsync.DefaultDeadLetterStream); err != nil {
		t.Fatal(err)
	}
	rep, _ := f.run()
	if rep.OK {
		t.Fatal("check passed without the dead-letter stream in verify mode")
	}
	expect(t, rep, "auth-event streams and consumer", opcheck.Fail, "dead-letter stream AUTH_EVENTS_DLQ does not exist")
	expect(t, rep, "notice stream and buckets", opcheck.OK, "present")
}

func TestCheckIndexThatPreventsTheUniqueOne(t *testing.T) {
	ns := testsupport.StartNATS(t)
	f := newFixture(t, ns.URL)
	ctx := testsupport.Context(t)
	if _, err := f.coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "userId", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	rep, _ := f.run()
	expect(t, rep, "unique user-id index", opcheck.Fail, "is not unique")
	if rep.OK {
		t.Fatal("check passed with a non-unique user-id index")
	}
}

func TestCheckMissingIndexWithDuplicatedUsers(t *testing.T) {
	ns := testsupport.StartNATS(t)
	f := newFixture(t, ns.URL)
	ctx := testsupport.Context(t)
	if _, err := f.coll.InsertMany(ctx, []any{
		bson.D{{Key: "userId", Value: "alice"}}, bson.D{{Key: "userId", Value: "alice"}}, bson.D{{Key: "userId", Value: "bob"}},
	}); err != nil {
		t.Fatal(err)
	}
	rep, _ := f.run()
	expect(t, rep, "unique user-id index", opcheck.Fail, `1 user ids of the sample have several documents (e.g. "alice")`)
	expect(t, rep, "collection sample", opcheck.Fail, "1 duplicated user ids")
	f.cfg.Data.AllowDuplicates = true
	rep, _ = f.run()
	expect(t, rep, "unique user-id index", opcheck.Warn, "ALLOW_DUPLICATE_USERS")
	expect(t, rep, "collection sample", opcheck.OK, "1 duplicated user ids")
}

func jetstreamNew(t *testing.T, nc *nats.Conn) (jetstream.JetStream, error) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js, nil
}
