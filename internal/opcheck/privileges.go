package opcheck

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

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

// grants: {db: "", collection: ""} is every database's collections,
// {db: D, collection: ""} every collection of D.
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

// readPrivileges returns the user's privileges, or ok=false when no user
// is authenticated (access control off, or nothing to list).
func readPrivileges(ctx context.Context, client *mongo.Client) (users []string, privs []privilege, ok bool, err error) {
	var cs connectionStatus
	err = client.Database("admin").RunCommand(ctx, bson.D{{Key: "connectionStatus", Value: 1}, {Key: "showPrivileges", Value: true}}).Decode(&cs)
	if err != nil {
		return nil, nil, false, fmt.Errorf("connectionStatus: %w", err)
	}
	for _, u := range cs.AuthInfo.AuthenticatedUsers {
		users = append(users, u.User+"@"+u.DB)
	}
	return users, cs.AuthInfo.Privileges, len(users) > 0, nil
}

// missingActions lists the actions none of privs grants on db.coll.
func missingActions(privs []privilege, db, coll string, actions []string) []string {
	var missing []string
	for _, a := range actions {
		if !slices.ContainsFunc(privs, func(p privilege) bool { return p.grants(a, db, coll) }) {
			missing = append(missing, a)
		}
	}
	return missing
}
