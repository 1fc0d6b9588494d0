package opcheck

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// RolesFile is the role script that grants the worker what check finds
// missing.
const RolesFile = "deploy/mongodb/roles.js"

// CollectionActions are the privilege actions the worker uses on the
// custom-data collection (resource {db, collection}): find (lookups, the
// change stream, index checks), insert and update (trigger upserts need
// both), remove (DELETE), createIndex and listIndexes (the unique
// user-id index), changeStream (notices); collMod only where it enables
// pre-images. deploy/mongodb/roles.js grants exactly these, and
// DatabaseActions; a test holds them equal.
// https://www.mongodb.com/docs/manual/reference/privilege-actions/
func CollectionActions(preImages bool) []string {
	a := []string{"find", "insert", "update", "remove", "createIndex", "listIndexes", "changeStream"}
	if preImages {
		a = append(a, "collMod")
	}
	return a
}

// DatabaseActions are the actions the worker uses on the collection's
// database (resource {db, collection: ""}; MongoDB applies them to
// database resources only): listCollections, with which the collection
// guard reads the collection's UUID and options.
func DatabaseActions() []string { return []string{"listCollections"} }

func isDatabaseAction(action string) bool { return slices.Contains(DatabaseActions(), action) }

// codeUnauthorized is MongoDB's Unauthorized: the user lacks a privilege.
const codeUnauthorized = 13

func isUnauthorized(err error) bool {
	var se mongo.ServerError
	return errors.As(err, &se) && se.HasErrorCode(codeUnauthorized)
}

// connectionStatus is the reply of connectionStatus with showPrivileges.
// https://www.mongodb.com/docs/manual/reference/command/connectionStatus/
type connectionStatus struct {
	AuthInfo struct {
		AuthenticatedUsers []struct {
			User string `bson:"user"`
			DB   string `bson:"db"`
		} `bson:"authenticatedUsers"`
		Privileges []privilege `bson:"authenticatedUserPrivileges"`
	} `bson:"authInfo"`
}

// privilege is one entry of authenticatedUserPrivileges: a resource
// document (https://www.mongodb.com/docs/manual/reference/resource-document/)
// and its actions.
type privilege struct {
	Resource struct {
		DB          *string `bson:"db"`
		Collection  *string `bson:"collection"`
		AnyResource bool    `bson:"anyResource"`
	} `bson:"resource"`
	Actions []string `bson:"actions"`
}

// grants reports whether p grants action on db.coll, or on database db
// when coll is "". {db: "", collection: ""} is every database's
// collections (and the databases themselves), {db: D, collection: ""}
// database D and every collection of D; a collection resource grants
// nothing on its database.
func (p privilege) grants(action, db, coll string) bool {
	if !slices.Contains(p.Actions, action) {
		return false
	}
	r := p.Resource
	if r.AnyResource {
		return true
	}
	if r.DB == nil || r.Collection == nil {
		return false // cluster or system resources
	}
	return (*r.DB == "" || *r.DB == db) && (*r.Collection == "" || *r.Collection == coll)
}

// access is what check learnt of the user's privileges on the custom-data
// collection: the refusals met trying (action → error) and, when a user is
// authenticated, the privileges the server lists for it.
type access struct {
	db, coll string
	refused  map[string]error
	users    []string
	privs    []privilege
	// listed: privs are the authenticated user's (else no user is
	// authenticated, or listErr says why they could not be read).
	listed  bool
	listErr error
}

func newAccess(db, coll string) *access {
	return &access{db: db, coll: coll, refused: map[string]error{}}
}

// tried records the outcome of trying action: a refusal for want of a
// privilege (code 13) is remembered; err is returned as is.
func (a *access) tried(action string, err error) error {
	if isUnauthorized(err) {
		a.refused[action] = err
	}
	return err
}

// readPrivileges lists the authenticated user's privileges
// (connectionStatus), for what cannot be tried without an effect.
func (a *access) readPrivileges(ctx context.Context, client *mongo.Client) {
	var cs connectionStatus
	err := client.Database("admin").RunCommand(ctx, bson.D{{Key: "connectionStatus", Value: 1}, {Key: "showPrivileges", Value: true}}).Decode(&cs)
	if err != nil {
		a.listErr = fmt.Errorf("connectionStatus: %w", err)
		return
	}
	for _, u := range cs.AuthInfo.AuthenticatedUsers {
		a.users = append(a.users, u.User+"@"+u.DB)
	}
	a.privs, a.listed = cs.AuthInfo.Privileges, len(a.users) > 0
}

// missing reports whether the user lacks action: it was refused when
// tried, or the user's listed privileges do not grant it.
func (a *access) missing(action string) bool {
	if a.refused[action] != nil {
		return true
	}
	if !a.listed {
		return false
	}
	coll := a.coll
	if isDatabaseAction(action) {
		coll = ""
	}
	return !slices.ContainsFunc(a.privs, func(p privilege) bool { return p.grants(action, a.db, coll) })
}

// resource names where action applies, as roles.js grants it.
func (a *access) resource(action string) string {
	if isDatabaseAction(action) {
		return "database " + a.db
	}
	return a.db + "." + a.coll
}

// denial is the detail of a check MongoDB refused for want of a
// privilege: the actions of want the user is known to lack (the first of
// want when none is known: the server refused it), each with its
// resource, and where to grant them.
func (a *access) denial(want ...string) string {
	var lacking []string
	for _, w := range want {
		if a.missing(w) {
			lacking = append(lacking, w)
		}
	}
	if len(lacking) == 0 {
		lacking = want[:1]
	}
	return notAuthorized(a, lacking)
}

// notAuthorized says which actions are missing on which resource:
// "not authorized: changeStream on app.custom_user_data (grant it:
// deploy/mongodb/roles.js)".
func notAuthorized(a *access, actions []string) string {
	var parts []string
	for i := 0; i < len(actions); {
		res := a.resource(actions[i])
		j := i
		for j < len(actions) && a.resource(actions[j]) == res {
			j++
		}
		parts = append(parts, strings.Join(actions[i:j], ", ")+" on "+res)
		i = j
	}
	pronoun := "it"
	if len(actions) > 1 {
		pronoun = "them"
	}
	return fmt.Sprintf("not authorized: %s (grant %s: %s)", strings.Join(parts, " and "), pronoun, RolesFile)
}
