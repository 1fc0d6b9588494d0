package opcheck

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

// unauthorized is a refusal as the driver returns it for a command the
// user lacks the privilege for: ok 0, code 13, codeName Unauthorized
// (https://www.mongodb.com/docs/manual/reference/error-codes/), with the
// server's message.
func unauthorized(command string) error {
	return mongo.CommandError{Code: 13, Name: "Unauthorized",
		Message: fmt.Sprintf("not authorized on app to execute command { %s: \"custom_user_data\", $db: \"app\" }", command)}
}

// privilegesOf reads a connectionStatus reply shaped as
// https://www.mongodb.com/docs/manual/reference/command/connectionStatus/
// shows it (showPrivileges: true) into an access.
func privilegesOf(t *testing.T, privileges string) *access {
	t.Helper()
	reply := testsupport.ExtJSON(t, `{"authInfo": {
		"authenticatedUsers": [{"user": "worker", "db": "admin"}],
		"authenticatedUserRoles": [{"role": "customdataWorker", "db": "app"}],
		"authenticatedUserPrivileges": `+privileges+`}, "ok": 1}`)
	var cs connectionStatus
	if err := bson.Unmarshal(reply, &cs); err != nil {
		t.Fatal(err)
	}
	acc := newAccess("app", "custom_user_data")
	for _, u := range cs.AuthInfo.AuthenticatedUsers {
		acc.users = append(acc.users, u.User+"@"+u.DB)
	}
	acc.privs, acc.listed = cs.AuthInfo.Privileges, true
	return acc
}

// The privileges of deploy/mongodb/roles.js's worker role minus
// createIndex: what a listed privilege grants, on which resource.
func TestMissingFromConnectionStatus(t *testing.T) {
	acc := privilegesOf(t, `[
		{"resource": {"db": "app", "collection": "custom_user_data"}, "actions": ["find", "insert", "update", "remove", "listIndexes", "changeStream", "listCollections"]},
		{"resource": {"db": "app", "collection": ""}, "actions": ["listCollections"]},
		{"resource": {"cluster": true}, "actions": ["collMod"]}]`)
	for action, want := range map[string]bool{
		"find": false, "insert": false, "update": false, "remove": false, "listIndexes": false, "changeStream": false,
		"listCollections": false, "createIndex": true,
		"collMod": true, // a cluster resource grants nothing on a collection
	} {
		if got := acc.missing(action); got != want {
			t.Errorf("missing(%s) = %v, want %v", action, got, want)
		}
	}
	// listCollections applies to the database resource only: granted on
	// the collection alone, it is missing.
	onCollectionOnly := privilegesOf(t, `[{"resource": {"db": "app", "collection": "custom_user_data"}, "actions": ["listCollections"]}]`)
	if !onCollectionOnly.missing("listCollections") {
		t.Error("listCollections on the collection resource counted as granted on its database")
	}
	otherDB := privilegesOf(t, `[{"resource": {"db": "other", "collection": ""}, "actions": ["find"]}]`)
	if !otherDB.missing("find") {
		t.Error("find on database other counted as granted on app.custom_user_data")
	}
	anyDB := privilegesOf(t, `[{"resource": {"db": "", "collection": ""}, "actions": ["createIndex", "listCollections"]}]`)
	if anyDB.missing("createIndex") || anyDB.missing("listCollections") {
		t.Error(`{db: "", collection: ""} does not grant on app and its collections`)
	}
	anyResource := privilegesOf(t, `[{"resource": {"anyResource": true}, "actions": ["collMod"]}]`)
	if anyResource.missing("collMod") {
		t.Error("anyResource does not grant collMod")
	}
}

// Each line whose probe MongoDB refuses with code 13 names the action it
// lacks and where to grant it; other errors are reported as they are.
func TestRefusedLinesNameTheMissingAction(t *testing.T) {
	data := customdata.Config{Database: "app", Collection: "custom_user_data"}
	data.SetDefaults()
	ns := "app.custom_user_data"
	rs0 := Topology{Kind: ReplicaSet, SetName: "rs0"}
	tests := []struct {
		name string
		run  func(r *Report, acc *access)
		line string
		want string
	}{
		{"change stream", func(r *Report, acc *access) {
			st, d := judgeChangeStreams(rs0, acc.tried("changeStream", unauthorized("aggregate")), acc)
			r.add("change streams", st, "%s", d)
		}, "change streams", "open a change stream: not authorized: changeStream on app.custom_user_data (grant it: deploy/mongodb/roles.js)"},
		{"change stream refused for want of find", func(r *Report, acc *access) {
			_ = acc.tried("find", unauthorized("find"))
			st, d := judgeChangeStreams(rs0, acc.tried("changeStream", unauthorized("aggregate")), acc)
			r.add("change streams", st, "%s", d)
		}, "change streams", "open a change stream: not authorized: changeStream, find on app.custom_user_data (grant them: deploy/mongodb/roles.js)"},
		{"indexes", func(r *Report, acc *access) {
			checkIndex(r, data, ns, customdata.UserIndex{}, acc.tried("listIndexes", unauthorized("listIndexes")), sample{}, nil, acc)
		}, "unique user-id index", "list the indexes of app.custom_user_data: not authorized: listIndexes on app.custom_user_data (grant it: deploy/mongodb/roles.js)"},
		{"sample", func(r *Report, acc *access) {
			checkSample(r, data, 16384, customdata.UserIndex{}, sample{}, acc.tried("find", unauthorized("count")), acc)
		}, "collection sample", "read the collection: not authorized: find on app.custom_user_data (grant it: deploy/mongodb/roles.js)"},
		{"pre-images", func(r *Report, acc *access) {
			checkPreImages(r, nil, acc.tried("listCollections", unauthorized("listCollections")), acc)
		}, "pre-images", "listCollections: not authorized: listCollections on database app (grant it: deploy/mongodb/roles.js)"},
		{"not a refusal", func(r *Report, acc *access) {
			checkSample(r, data, 16384, customdata.UserIndex{}, sample{},
				acc.tried("find", mongo.CommandError{Code: 11600, Name: "InterruptedAtShutdown", Message: "interrupted at shutdown"}), acc)
		}, "collection sample", "read the collection: (InterruptedAtShutdown) interrupted at shutdown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Report
			acc := newAccess("app", "custom_user_data")
			tt.run(&r, acc)
			if len(r.Results) != 1 {
				t.Fatalf("lines %+v", r.Results)
			}
			got := r.Results[0]
			if got.Name != tt.line || got.Status != Fail || got.Detail != tt.want {
				t.Fatalf("%s = %s %q\nwant  %s %s %q", got.Name, got.Status, got.Detail, tt.line, Fail, tt.want)
			}
		})
	}
}

// The privileges line lists every action missing, tried or listed, by
// resource, with the first refusal the server gave.
func TestPrivilegesLine(t *testing.T) {
	t.Run("refused and not listed", func(t *testing.T) {
		acc := privilegesOf(t, `[{"resource": {"db": "app", "collection": "custom_user_data"}, "actions": ["find", "update", "remove", "listIndexes"]}]`)
		_ = acc.tried("changeStream", unauthorized("aggregate"))
		var r Report
		checkPrivileges(&r, acc, true)
		want := "not authorized: insert, createIndex, changeStream, collMod on app.custom_user_data and listCollections on database app " +
			"(grant them: deploy/mongodb/roles.js); the server said: (Unauthorized) not authorized on app to execute command " +
			`{ aggregate: "custom_user_data", $db: "app" }`
		if got := r.Results[0]; got.Status != Fail || got.Detail != want {
			t.Fatalf("%s %q\nwant %q", got.Status, got.Detail, want)
		}
	})
	t.Run("all granted", func(t *testing.T) {
		acc := privilegesOf(t, `[
			{"resource": {"db": "app", "collection": "custom_user_data"}, "actions": ["find", "insert", "update", "remove", "createIndex", "listIndexes", "changeStream"]},
			{"resource": {"db": "app", "collection": ""}, "actions": ["listCollections"]}]`)
		var r Report
		checkPrivileges(&r, acc, false)
		want := "worker@admin has find, insert, update, remove, createIndex, listIndexes, changeStream on app.custom_user_data and listCollections on database app"
		if got := r.Results[0]; got.Status != OK || got.Detail != want {
			t.Fatalf("%s %q\nwant %q", got.Status, got.Detail, want)
		}
		r = Report{}
		checkPrivileges(&r, acc, true)
		if got := r.Results[0]; got.Status != Fail || !strings.HasPrefix(got.Detail, "not authorized: collMod on app.custom_user_data (grant it:") {
			t.Fatalf("with pre-images, collMod not reported missing: %s %q", got.Status, got.Detail)
		}
	})
	t.Run("privileges unreadable", func(t *testing.T) {
		acc := newAccess("app", "custom_user_data")
		acc.listErr = errors.New("connectionStatus: connection reset")
		var r Report
		checkPrivileges(&r, acc, false)
		if got := r.Results[0]; got.Status != Warn || !strings.Contains(got.Detail, "insert and createIndex not verified") {
			t.Fatalf("%s %q", got.Status, got.Detail)
		}
	})
}
