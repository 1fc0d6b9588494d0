package mongodeploy_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/noticetail"
	"github.com/customdata-worker/customdata-worker/internal/opcheck"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/issuer"
	"github.com/customdata-worker/customdata-worker/triggers"
	"github.com/customdata-worker/customdata-worker/worker"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

// privileges builds a role's privileges as roles.js does, on db.coll.
func privileges(collActions, dbActions []string, db, coll string) bson.A {
	p := bson.A{bson.D{{Key: "resource", Value: bson.D{{Key: "db", Value: db}, {Key: "collection", Value: coll}}}, {Key: "actions", Value: collActions}}}
	if len(dbActions) > 0 {
		p = append(p, bson.D{{Key: "resource", Value: bson.D{{Key: "db", Value: db}, {Key: "collection", Value: ""}}}, {Key: "actions", Value: dbActions}})
	}
	return p
}

// roleUser creates role in db with privs and a user of that role in db
// (dropped at cleanup), and returns the user's connection string.
func roleUser(t *testing.T, admin *mongo.Client, uri, db, role string, privs bson.A) string {
	t.Helper()
	ctx := testsupport.Context(t)
	d := admin.Database(db)
	if err := d.RunCommand(ctx, bson.D{{Key: "createRole", Value: role}, {Key: "privileges", Value: privs}, {Key: "roles", Value: bson.A{}}}).Err(); err != nil {
		t.Fatalf("createRole %s (as roles.js does): %v", role, err)
	}
	pw := make([]byte, 16)
	_, _ = rand.Read(pw)
	password := hex.EncodeToString(pw)
	if err := d.RunCommand(ctx, bson.D{{Key: "createUser", Value: role}, {Key: "pwd", Value: password},
		{Key: "roles", Value: bson.A{bson.D{{Key: "role", Value: role}, {Key: "db", Value: db}}}}}).Err(); err != nil {
		t.Fatalf("createUser %s: %v", role, err)
	}
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, password)
	q := u.Query()
	q.Set("authSource", db)
	u.RawQuery = q.Encode()
	return u.String()
}

func connectAs(t *testing.T, uri string) *mongo.Client {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(uri).SetServerSelectionTimeout(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

func isUnauthorized(err error) bool {
	var se mongo.ServerError
	return errors.As(err, &se) && se.HasErrorCode(13)
}

// serverMajor is the server's major version.
func serverMajor(t *testing.T, c *mongo.Client) int {
	t.Helper()
	var bi struct {
		VersionArray []int32 `bson:"versionArray"`
	}
	if err := c.Database("admin").RunCommand(testsupport.Context(t), bson.D{{Key: "buildInfo", Value: 1}}).Decode(&bi); err != nil || len(bi.VersionArray) == 0 {
		t.Fatalf("buildInfo: %v", err)
	}
	return int(bi.VersionArray[0])
}

func report(rep opcheck.Report) string {
	var b strings.Builder
	_ = rep.WriteText(&b)
	return b.String()
}

func line(t *testing.T, rep opcheck.Report, name string) opcheck.Result {
	t.Helper()
	for _, r := range rep.Results {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no line %q in:\n%s", name, report(rep))
	return opcheck.Result{}
}

// TestRolesOnMongoDB creates roles.js's roles (its very action lists) on
// the server of MONGODB_URI, which must let that URI's user create roles
// and users, and shows: the real worker runs under its role (index,
// upserts, deletes, the collection guard, the change stream, pre-images
// on 6.0+) and `check` passes; an issuer reads under its role. Where the
// server enforces access control, it also shows each refused the rest
// and `check` naming the action a role lacks.
func TestRolesOnMongoDB(t *testing.T) {
	uri := os.Getenv("MONGODB_URI")
	if uri == "" {
		t.Skip("MONGODB_URI is unset: roles need a real MongoDB. The stand-in has no users, roles or access control, " +
			"so it cannot show them (README, Stand-in differences)")
	}
	s := readScript(t)
	m := testsupport.MongoDB(t)
	admin := m.Client(t)
	ctx := testsupport.Context(t)
	db := testsupport.DatabaseName(t)
	coll := events.DefaultCollection
	t.Cleanup(func() {
		cctx := context.Background()
		_ = admin.Database(db).RunCommand(cctx, bson.D{{Key: "dropAllUsersFromDatabase", Value: 1}}).Err()
		_ = admin.Database(db).RunCommand(cctx, bson.D{{Key: "dropAllRolesFromDatabase", Value: 1}}).Err()
		_ = admin.Database(db).Drop(cctx)
	})
	preImages := serverMajor(t, admin) >= 6 // fullDocumentBeforeChange: 6.0+
	workerURI := roleUser(t, admin, uri, db, s.str(t, "workerRole"),
		privileges(s.workerCollectionActions(t, preImages), s.array(t, "workerDatabaseActions"), db, coll))
	issuerURI := roleUser(t, admin, uri, db, s.str(t, "issuerRole"),
		privileges(s.array(t, "issuerCollectionActions"), nil, db, coll))
	noChangeStream := slices.DeleteFunc(s.workerCollectionActions(t, preImages), func(a string) bool { return a == "changeStream" })
	lackingURI := roleUser(t, admin, uri, db, "workerWithoutChangeStream",
		privileges(noChangeStream, s.array(t, "workerDatabaseActions"), db, coll))

	// The worker, as its role, from an empty database: index, upsert,
	// change stream (and collMod), guard; then a DELETE.
	ns := testsupport.StartNATS(t)
	set, err := triggers.NewSet(triggers.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := worker.Config{
		MongoURI: workerURI, NATS: worker.NATSConfig{URL: ns.URL, Name: "roles-test-worker"},
		Data: customdata.Config{Database: db, Collection: coll}, Notices: true, Triggers: set,
	}
	cfg.Notify.PreAndPostImages = preImages
	logs := &testsupport.Logs{}
	w, err := worker.New(cfg, worker.WithLogger(zerolog.New(logs)))
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("worker: %v\n%s", err, logs)
		}
	})
	testsupport.Eventually(t, "worker ready under its role", func() bool {
		for _, c := range w.Checks() {
			if c.Check() != nil {
				return false
			}
		}
		return true
	})
	_, js := ns.Connect(t)
	pub, err := events.NewPublisher(js)
	if err != nil {
		t.Fatal(err)
	}
	const user = "ada"
	if _, err := pub.Publish(ctx, events.NewAuthEvent(events.OperationCreate, user, "local-userpass")); err != nil {
		t.Fatal(err)
	}
	data := admin.Database(db).Collection(coll)
	testsupport.Eventually(t, "the worker's upsert", func() bool {
		n, _ := data.CountDocuments(ctx, bson.D{{Key: "userId", Value: user}})
		return n == 1
	})
	errFound := errors.New("found")
	err = noticetail.Follow(ctx, js, noticetail.Options{Stream: "CUSTOMDATA_NOTICES", Prefix: events.DefaultNoticePrefix, Since: time.Hour, UserID: user},
		func(l noticetail.Line) error {
			if l.Notice.UserID == user {
				return errFound
			}
			return nil
		})
	if !errors.Is(err, errFound) {
		t.Fatalf("no notice for %s from the worker's change stream: %v\n%s", user, err, logs)
	}

	// An issuer, as its role, reads the user's document.
	src, err := issuer.NewSource(connectAs(t, issuerURI), issuer.SourceConfig{Database: db, Collection: coll})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := src.Get(ctx, user); err != nil || !d.Found() {
		t.Fatalf("issuer Get under its role: found %v, %v", d.Found(), err)
	}

	if _, err := pub.Publish(ctx, events.NewAuthEvent(events.OperationDelete, user, "local-userpass")); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, "the worker's delete", func() bool {
		n, err := data.CountDocuments(ctx, bson.D{{Key: "userId", Value: user}})
		return err == nil && n == 0
	})
	if n := logs.Count("not authorized") + logs.Count("Unauthorized"); n > 0 {
		t.Errorf("the worker was refused something under its role (%d log lines):\n%s", n, logs)
	}

	// check, with the worker's MongoDB user.
	rep := opcheck.Run(ctx, opcheck.Config{Worker: cfg, Timeout: 5 * time.Second})
	if !rep.OK {
		t.Errorf("check under the worker's role failed:\n%s", report(rep))
	}
	if p := line(t, rep, "MongoDB privileges"); p.Status != opcheck.OK {
		t.Errorf("privileges: %s %q", p.Status, p.Detail)
	}

	t.Run("refused", func(t *testing.T) {
		iss := connectAs(t, issuerURI).Database(db).Collection(coll)
		_, err := iss.InsertOne(ctx, bson.D{{Key: "userId", Value: "mallory"}})
		if err == nil {
			t.Skip("MONGODB_URI's server does not enforce access control (mongod without --auth or a keyFile): " +
				"the issuer could write, so no refusal can show here; .github/workflows/test.yml runs this test on one that does")
		}
		if !isUnauthorized(err) {
			t.Fatalf("issuer insert: %v, want Unauthorized (13)", err)
		}
		if _, err := iss.DeleteMany(ctx, bson.D{}); !isUnauthorized(err) {
			t.Errorf("issuer delete: %v, want Unauthorized (13)", err)
		}
		other := connectAs(t, workerURI).Database(db).Collection("other")
		if err := other.FindOne(ctx, bson.D{}).Err(); !isUnauthorized(err) {
			t.Errorf("worker reading another collection: %v, want Unauthorized (13)", err)
		}

		// check, with a role lacking changeStream, names it.
		lacking := cfg
		lacking.MongoURI = lackingURI
		rep := opcheck.Run(ctx, opcheck.Config{Worker: lacking, Timeout: 5 * time.Second})
		if rep.OK {
			t.Fatalf("check passed without changeStream:\n%s", report(rep))
		}
		ns := db + "." + coll
		for name, want := range map[string]string{
			"change streams":     "open a change stream: not authorized: changeStream on " + ns + " (grant it: deploy/mongodb/roles.js)",
			"MongoDB privileges": "not authorized: changeStream on " + ns + " (grant it: deploy/mongodb/roles.js); the server said:",
		} {
			if l := line(t, rep, name); l.Status != opcheck.Fail || !strings.HasPrefix(l.Detail, want) {
				t.Errorf("%s = %s %q, want ✗ starting %q", name, l.Status, l.Detail, want)
			}
		}
	})
}
