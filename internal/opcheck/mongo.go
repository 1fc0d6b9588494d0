package opcheck

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

func checkMongo(ctx context.Context, cfg Config, client *mongo.Client, connectErr error, r *Report) {
	w := cfg.Worker
	ns := w.Data.Database + "." + w.Data.Collection
	if connectErr != nil {
		r.add("MongoDB", Fail, "%v", connectErr)
		r.add("MongoDB collection", Skipped, "MongoDB is not connected")
		return
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var build struct {
		Version string `bson:"version"`
	}
	_ = client.Database("admin").RunCommand(cctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&build)
	r.add("MongoDB", OK, "connected (server %s)", orUnknown(build.Version))

	coll := client.Database(w.Data.Database).Collection(w.Data.Collection)
	tried := map[string]error{} // privilege → the refusal of trying it

	topo, terr := readTopology(cctx, client)
	if terr != nil {
		r.add("change streams", Fail, "cannot tell the deployment's topology: %v", terr)
	} else {
		watchErr := tryChangeStream(cctx, coll)
		if isUnauthorized(watchErr) {
			tried["changeStream"] = watchErr
		}
		st, detail := judgeChangeStreams(topo, watchErr)
		r.add("change streams", st, "%s", detail)
	}

	ix, ierr := customdata.InspectUserIndex(cctx, coll, w.Data.UserIDField)
	if isUnauthorized(ierr) {
		tried["listIndexes"] = ierr
	}
	s, serr := readSample(cctx, coll, w.Data.UserIDField, cfg.Sample, w.Notify.OversizeBytes, ix.Unique, cfg.Progress)
	if isUnauthorized(serr) {
		tried["find"] = serr
	}
	checkIndex(r, w.Data, ns, ix, ierr, s, serr)
	checkSample(r, w.Data, w.Notify.OversizeBytes, ix, s, serr)
	if w.Notices && w.Notify.PreAndPostImages {
		checkPreImages(cctx, r, client.Database(w.Data.Database), w.Data.Collection)
	}
	checkPrivileges(cctx, r, client, coll, w.Notices && w.Notify.PreAndPostImages, tried)
}

func checkIndex(r *Report, data customdata.Config, ns string, ix customdata.UserIndex, ierr error, s sample, serr error) {
	name := "unique user-id index"
	want := customdata.UserIndexName(data.UserIDField)
	switch {
	case ierr != nil:
		r.add(name, Fail, "list the indexes of %s: %v", ns, ierr)
	case ix.Unique:
		r.add(name, OK, "%s on %s.%s", ix.Name, ns, data.UserIDField)
	case data.AllowDuplicates && ix.Name != "":
		r.add(name, OK, "ALLOW_DUPLICATE_USERS: plain index %s on %s.%s", ix.Name, ns, data.UserIDField)
	case data.AllowDuplicates:
		r.add(name, Warn, "ALLOW_DUPLICATE_USERS: no index on %s.%s; the worker creates a plain one at startup", ns, data.UserIDField)
	case ix.Name != "":
		r.add(name, Fail, "index %s on %s.%s is not unique, so the worker cannot create %s: drop it, or set CUSTOMDATA_ALLOW_DUPLICATE_USERS=true",
			ix.Name, ns, data.UserIDField, want)
	case serr == nil && s.duplicated > 0:
		r.add(name, Fail, "missing, and it cannot be built: %d user ids of the sample have several documents (e.g. %s); merge them, or set CUSTOMDATA_ALLOW_DUPLICATE_USERS=true",
			s.duplicated, strings.Join(s.duplicateSamples, ", "))
	default:
		r.add(name, Warn, "missing on %s.%s; the worker builds %s at startup (needs createIndex, and no duplicated user ids)", ns, data.UserIDField, want)
	}
}

func checkSample(r *Report, data customdata.Config, oversizeBytes int, ix customdata.UserIndex, s sample, serr error) {
	name := "collection sample"
	if serr != nil {
		r.add(name, Fail, "read the collection: %v", serr)
		return
	}
	if s.read == 0 {
		r.add(name, OK, "the collection is empty")
		return
	}
	var parts []string
	st := OK
	switch {
	case ix.Unique:
		parts = append(parts, "no duplicated user ids (unique index)")
	case s.duplicated > 0:
		parts = append(parts, fmt.Sprintf("%d duplicated user ids (e.g. %s)", s.duplicated, strings.Join(s.duplicateSamples, ", ")))
		if !data.AllowDuplicates {
			st = Fail
		}
	default:
		parts = append(parts, "no duplicated user ids")
	}
	if s.oversize > 0 {
		parts = append(parts, fmt.Sprintf("%d documents above OVERSIZE_BYTES %d (e.g. _id %s; their notices are flagged oversize)",
			s.oversize, oversizeBytes, strings.Join(s.oversizeSamples, ", ")))
		if st == OK {
			st = Warn
		}
	} else {
		parts = append(parts, fmt.Sprintf("none above OVERSIZE_BYTES %d", oversizeBytes))
	}
	r.add(name, st, "read %d of about %d documents: %s", s.read, s.estimated, strings.Join(parts, "; "))
}

// tryChangeStream opens a change stream on the collection and closes it.
func tryChangeStream(ctx context.Context, coll *mongo.Collection) error {
	cs, err := coll.Watch(ctx, mongo.Pipeline{})
	if err != nil {
		return err
	}
	return cs.Close(ctx)
}

// checkPreImages reads the collection's changeStreamPreAndPostImages
// option (listCollections), which the worker sets at startup with collMod.
func checkPreImages(ctx context.Context, r *Report, db *mongo.Database, coll string) {
	name := "pre-images"
	specs, err := db.ListCollectionSpecifications(ctx, bson.D{{Key: "name", Value: coll}})
	if err != nil {
		r.add(name, Fail, "listCollections: %v", err)
		return
	}
	if len(specs) == 0 {
		r.add(name, Warn, "PRE_AND_POST_IMAGES: the collection does not exist yet; the worker enables changeStreamPreAndPostImages once it does (needs collMod)")
		return
	}
	enabled, err := specs[0].Options.LookupErr("changeStreamPreAndPostImages", "enabled")
	if err == nil && enabled.Type == bson.TypeBoolean && enabled.Boolean() {
		r.add(name, OK, "changeStreamPreAndPostImages enabled on the collection")
		return
	}
	r.add(name, Warn, "PRE_AND_POST_IMAGES: changeStreamPreAndPostImages is not enabled yet; the worker enables it at startup "+
		"(needs collMod and MongoDB 6.0+; until then deletes name only the document id)")
}

// checkPrivileges tries what can be tried without an effect (an update and
// a delete that match nothing), adds the refusals met by the other checks,
// and reads the user's privileges for what cannot be tried (insert,
// createIndex, collMod).
func checkPrivileges(ctx context.Context, r *Report, client *mongo.Client, coll *mongo.Collection, preImages bool, tried map[string]error) {
	name := "MongoDB privileges"
	nothing := bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{}}}}}
	if _, err := coll.UpdateOne(ctx, nothing, bson.D{{Key: "$set", Value: bson.D{{Key: "_check", Value: 1}}}}); isUnauthorized(err) {
		tried["update"] = err
	}
	if _, err := coll.DeleteOne(ctx, nothing); isUnauthorized(err) {
		tried["remove"] = err
	}
	actions := []string{"find", "insert", "update", "remove", "listIndexes", "createIndex", "changeStream"}
	if preImages {
		actions = append(actions, "collMod")
	}
	var missing []string
	for _, a := range actions {
		if tried[a] != nil {
			missing = append(missing, a)
		}
	}
	users, privs, authenticated, err := readPrivileges(ctx, client)
	ns := coll.Database().Name() + "." + coll.Name()
	switch {
	case err != nil && len(missing) == 0:
		r.add(name, Warn, "find, update, remove, listIndexes and changeStream tried and granted; insert and createIndex not verified (%v)", err)
		return
	case authenticated:
		for _, a := range missingActions(privs, coll.Database().Name(), coll.Name(), actions) {
			if tried[a] == nil {
				missing = append(missing, a)
			}
		}
	}
	if len(missing) > 0 {
		var refusal error
		for _, a := range missing {
			if tried[a] != nil {
				refusal = tried[a]
				break
			}
		}
		detail := fmt.Sprintf("missing on %s: %s (see deploy/mongodb for the role)", ns, strings.Join(missing, ", "))
		if refusal != nil {
			detail += fmt.Sprintf("; the server said: %v", errors.Unwrap(refusal))
		}
		r.add(name, Fail, "%s", detail)
		return
	}
	if !authenticated {
		r.add(name, OK, "no authenticated user (access control off): find, update, remove, listIndexes and changeStream tried on %s", ns)
		return
	}
	r.add(name, OK, "%s has %s on %s", strings.Join(users, ", "), strings.Join(actions, ", "), ns)
}

func orUnknown(s string) string {
	if s == "" {
		return "version unknown"
	}
	return s
}
