package opcheck

import (
	"context"
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

	db := client.Database(w.Data.Database)
	coll := db.Collection(w.Data.Collection)
	preImages := w.Notices && w.Notify.PreAndPostImages
	// Every probe first, then the lines: a line whose probe was refused
	// names the missing privilege, which the later probes and the user's
	// listed privileges tell apart (a change stream refused for want of
	// find, say).
	acc := newAccess(w.Data.Database, w.Data.Collection)
	topo, terr := readTopology(cctx, client)
	var watchErr error
	if terr == nil {
		watchErr = acc.tried("changeStream", tryChangeStream(cctx, coll))
	}
	ix, ierr := customdata.InspectUserIndex(cctx, coll, w.Data.UserIDField)
	_ = acc.tried("listIndexes", ierr)
	s, serr := readSample(cctx, coll, w.Data.UserIDField, cfg.Sample, w.Notify.OversizeBytes, ix.Unique, cfg.Progress)
	_ = acc.tried("find", serr)
	spec, lerr := readCollection(cctx, db, w.Data.Collection)
	_ = acc.tried("listCollections", lerr)
	tryWrites(cctx, coll, acc)
	acc.readPrivileges(cctx, client)

	if terr != nil {
		r.add("change streams", Fail, "cannot tell the deployment's topology: %v", terr)
	} else {
		st, detail := judgeChangeStreams(topo, watchErr, acc)
		r.add("change streams", st, "%s", detail)
	}
	checkIndex(r, w.Data, ns, ix, ierr, s, serr, acc)
	checkSample(r, w.Data, w.Notify.OversizeBytes, ix, s, serr, acc)
	if preImages {
		checkPreImages(r, spec, lerr, acc)
	}
	checkPrivileges(r, acc, preImages)
}

func checkIndex(r *Report, data customdata.Config, ns string, ix customdata.UserIndex, ierr error, s sample, serr error, acc *access) {
	name := "unique user-id index"
	want := customdata.UserIndexName(data.UserIDField)
	switch {
	case isUnauthorized(ierr):
		r.add(name, Fail, "list the indexes of %s: %s", ns, acc.denial("listIndexes"))
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

func checkSample(r *Report, data customdata.Config, oversizeBytes int, ix customdata.UserIndex, s sample, serr error, acc *access) {
	name := "collection sample"
	if isUnauthorized(serr) {
		r.add(name, Fail, "read the collection: %s", acc.denial("find"))
		return
	}
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

// readCollection returns the collection's listCollections entry (nil
// when it does not exist), as the collection guard reads it: its UUID and
// options, so not nameOnly, which needs the listCollections privilege.
func readCollection(ctx context.Context, db *mongo.Database, coll string) (*mongo.CollectionSpecification, error) {
	specs, err := db.ListCollectionSpecifications(ctx, bson.D{{Key: "name", Value: coll}})
	if err != nil || len(specs) == 0 {
		return nil, err
	}
	return &specs[0], nil
}

// checkPreImages reads the collection's changeStreamPreAndPostImages
// option, which the worker sets at startup with collMod.
func checkPreImages(r *Report, spec *mongo.CollectionSpecification, lerr error, acc *access) {
	name := "pre-images"
	switch {
	case isUnauthorized(lerr):
		r.add(name, Fail, "listCollections: %s", acc.denial("listCollections"))
		return
	case lerr != nil:
		r.add(name, Fail, "listCollections: %v", lerr)
		return
	case spec == nil:
		r.add(name, Warn, "PRE_AND_POST_IMAGES: the collection does not exist yet; the worker enables changeStreamPreAndPostImages once it does (needs collMod)")
		return
	}
	enabled, err := spec.Options.LookupErr("changeStreamPreAndPostImages", "enabled")
	if err == nil && enabled.Type == bson.TypeBoolean && enabled.Boolean() {
		r.add(name, OK, "changeStreamPreAndPostImages enabled on the collection")
		return
	}
	r.add(name, Warn, "PRE_AND_POST_IMAGES: changeStreamPreAndPostImages is not enabled yet; the worker enables it at startup "+
		"(needs collMod and MongoDB 6.0+; until then deletes name only the document id)")
}

// tryWrites tries an update and a delete that match nothing: no effect,
// but the server checks the privilege first.
func tryWrites(ctx context.Context, coll *mongo.Collection, acc *access) {
	nothing := bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{}}}}}
	_, err := coll.UpdateOne(ctx, nothing, bson.D{{Key: "$set", Value: bson.D{{Key: "_check", Value: 1}}}})
	_ = acc.tried("update", err)
	_, err = coll.DeleteOne(ctx, nothing)
	_ = acc.tried("remove", err)
}

// triedActions are those check tries (the rest it can only read from the
// user's privileges: insert, createIndex, collMod).
const triedActions = "find, update, remove, listIndexes and changeStream"

// checkPrivileges reports every action the worker needs and the user
// lacks: refused when tried, or not among its listed privileges.
func checkPrivileges(r *Report, acc *access, preImages bool) {
	name := "MongoDB privileges"
	ns := acc.db + "." + acc.coll
	needed := append(CollectionActions(preImages), DatabaseActions()...)
	var missing []string
	var refusal error
	for _, a := range needed {
		if acc.missing(a) {
			missing = append(missing, a)
			if refusal == nil {
				refusal = acc.refused[a]
			}
		}
	}
	switch {
	case len(missing) > 0:
		detail := notAuthorized(acc, missing)
		if refusal != nil {
			detail += fmt.Sprintf("; the server said: %v", refusal)
		}
		r.add(name, Fail, "%s", detail)
	case acc.listErr != nil:
		unverified := "insert and createIndex"
		if preImages {
			unverified = "insert, createIndex and collMod"
		}
		r.add(name, Warn, "%s tried and granted on %s, listCollections on database %s; %s not verified (%v)",
			triedActions, ns, acc.db, unverified, acc.listErr)
	case !acc.listed:
		r.add(name, OK, "no authenticated user (access control off): %s tried on %s, listCollections on database %s", triedActions, ns, acc.db)
	default:
		r.add(name, OK, "%s has %s on %s and %s on database %s", strings.Join(acc.users, ", "),
			strings.Join(CollectionActions(preImages), ", "), ns, strings.Join(DatabaseActions(), ", "), acc.db)
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "version unknown"
	}
	return s
}
