package opcheck

import (
	"errors"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// hello replies shaped as https://www.mongodb.com/docs/manual/reference/command/hello/
// shows them (fields trimmed to those that matter plus a few neighbours).
const (
	helloReplicaSetPrimary = `{"isWritablePrimary": true, "topologyVersion": {"processId": {"$oid": "64b5f0c0a1b2c3d4e5f60718"}, "counter": 6},
		"hosts": ["m1.example.net:27017", "m2.example.net:27017"], "setName": "rs0", "setVersion": 1, "secondary": false,
		"primary": "m1.example.net:27017", "me": "m1.example.net:27017", "maxBsonObjectSize": 16777216, "ok": 1}`
	helloSecondary = `{"isWritablePrimary": false, "secondary": true, "setName": "rs0", "hosts": ["m1.example.net:27017"], "ok": 1}`
	// An uninitiated --replSet member: "isreplicaset: true" and no setName.
	helloNotInitiated = `{"isWritablePrimary": false, "secondary": false, "isreplicaset": true, "maxBsonObjectSize": 16777216, "ok": 1}`
	helloMongos       = `{"isWritablePrimary": true, "msg": "isdbgrid", "maxBsonObjectSize": 16777216, "ok": 1}`
	helloStandalone   = `{"isWritablePrimary": true, "topologyVersion": {"processId": {"$oid": "64b5f0c0a1b2c3d4e5f60718"}, "counter": 0},
		"maxBsonObjectSize": 16777216, "maxMessageSizeBytes": 48000000, "maxWriteBatchSize": 100000, "localTime": {"$date": "2026-12-06T04:00:00Z"},
		"logicalSessionTimeoutMinutes": 30, "connectionId": 12, "minWireVersion": 0, "maxWireVersion": 21, "readOnly": false, "ok": 1}`
)

func TestClassifyHello(t *testing.T) {
	tests := []struct {
		name, reply string
		want        Topology
	}{
		{"replica set primary", helloReplicaSetPrimary, Topology{Kind: ReplicaSet, SetName: "rs0"}},
		{"replica set secondary", helloSecondary, Topology{Kind: ReplicaSet, SetName: "rs0"}},
		{"not initiated", helloNotInitiated, Topology{Kind: NotInitiated}},
		{"mongos", helloMongos, Topology{Kind: Sharded}},
		{"standalone", helloStandalone, Topology{Kind: Standalone}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := classifyHello(testsupport.ExtJSON(t, tt.reply))
			if err != nil || got != tt.want {
				t.Fatalf("classifyHello = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// The server's refusals as the driver returns them: a standalone mongod
// refuses $changeStream with code 40573 (Location40573), a user without
// the privilege gets Unauthorized (13).
func TestJudgeChangeStreams(t *testing.T) {
	standaloneRefusal := mongo.CommandError{Code: 40573, Message: "The $changeStream stage is only supported on replica sets"}
	unauthorized := mongo.CommandError{Code: 13, Name: "Unauthorized", Message: "not authorized on app to execute command { aggregate: \"custom_user_data\" … }"}
	tests := []struct {
		name     string
		topo     Topology
		watchErr error
		want     Status
		says     string
	}{
		{"replica set", Topology{Kind: ReplicaSet, SetName: "rs0"}, nil, OK, "replica set rs0"},
		{"sharded", Topology{Kind: Sharded}, nil, OK, "sharded cluster"},
		{"standalone refuses", Topology{Kind: Standalone}, standaloneRefusal, Fail, "standalone server: change streams need a replica set"},
		{"refusal names standalone whatever hello said", Topology{Kind: ReplicaSet, SetName: "rs0"}, standaloneRefusal, Fail, "standalone server"},
		{"not initiated", Topology{Kind: NotInitiated}, errors.New("no primary"), Fail, "rs.initiate()"},
		{"missing privilege", Topology{Kind: ReplicaSet, SetName: "rs0"}, unauthorized, Fail,
			"open a change stream: not authorized: changeStream on app.custom_user_data (grant it: deploy/mongodb/roles.js)"},
		{"standalone that opens one", Topology{Kind: Standalone}, nil, Warn, "yet opened a change stream"},
		{"other error", Topology{Kind: ReplicaSet, SetName: "rs0"}, errors.New("connection reset"), Fail, "connection reset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acc := newAccess("app", "custom_user_data")
			st, detail := judgeChangeStreams(tt.topo, acc.tried("changeStream", tt.watchErr), acc)
			if st != tt.want || !strings.Contains(detail, tt.says) {
				t.Fatalf("judge = %s %q; want %s containing %q", st, detail, tt.want, tt.says)
			}
		})
	}
}
