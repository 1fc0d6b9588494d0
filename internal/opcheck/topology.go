package opcheck

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Topology is what the server says it is, from its hello response.
type Topology struct {
	Kind TopologyKind
	// SetName is the replica set's name.
	SetName string
}

// TopologyKind classifies a deployment for change streams.
type TopologyKind string

// Kinds. Change streams need a replica set or a sharded cluster.
const (
	ReplicaSet TopologyKind = "replica set"
	Sharded    TopologyKind = "sharded cluster"
	// NotInitiated: mongod started with --replSet whose set was never
	// initiated.
	NotInitiated TopologyKind = "replica set not initiated"
	Standalone   TopologyKind = "standalone"
)

// helloResponse holds the fields of the hello command's reply that tell
// deployments apart. https://www.mongodb.com/docs/manual/reference/command/hello/
// ("Replica Sets": setName, isreplicaset; "Sharded Instances": msg
// "isdbgrid" from mongos).
type helloResponse struct {
	SetName      string `bson:"setName"`
	IsReplicaSet bool   `bson:"isreplicaset"`
	Msg          string `bson:"msg"`
}

// classifyHello classifies a hello (or legacy isMaster) reply.
func classifyHello(doc bson.Raw) (Topology, error) {
	var h helloResponse
	if err := bson.Unmarshal(doc, &h); err != nil {
		return Topology{}, fmt.Errorf("read hello reply: %w", err)
	}
	switch {
	case h.Msg == "isdbgrid":
		return Topology{Kind: Sharded}, nil
	case h.SetName != "":
		return Topology{Kind: ReplicaSet, SetName: h.SetName}, nil
	case h.IsReplicaSet:
		return Topology{Kind: NotInitiated}, nil
	}
	return Topology{Kind: Standalone}, nil
}

// codeCommandNotFound is MongoDB's CommandNotFound.
const codeCommandNotFound = 59

// readTopology runs hello, or isMaster on servers older than 4.4.2
// (which lack hello, as the drivers' handshake also allows).
func readTopology(ctx context.Context, client *mongo.Client) (Topology, error) {
	admin := client.Database("admin")
	doc, err := admin.RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Raw()
	var se mongo.ServerError
	if errors.As(err, &se) && se.HasErrorCode(codeCommandNotFound) {
		doc, err = admin.RunCommand(ctx, bson.D{{Key: "isMaster", Value: 1}}).Raw()
	}
	if err != nil {
		return Topology{}, fmt.Errorf("hello: %w", err)
	}
	return classifyHello(doc)
}

// codeChangeStreamNeedsReplicaSet: "The $changeStream stage is only
// supported on replica sets" (a standalone mongod refuses to open one).
const codeChangeStreamNeedsReplicaSet = 40573

// judgeChangeStreams combines what the server says it is with what
// happened when a change stream was opened on the collection: the attempt
// is the proof, the topology the explanation. A refusal names what the
// user lacks: changeStream, or find, which a change stream needs too.
func judgeChangeStreams(t Topology, watchErr error, acc *access) (Status, string) {
	var se mongo.ServerError
	needsRS := errors.As(watchErr, &se) && se.HasErrorCode(codeChangeStreamNeedsReplicaSet)
	switch {
	case watchErr == nil && t.Kind == ReplicaSet:
		return OK, fmt.Sprintf("replica set %s; a change stream on the collection opens", t.SetName)
	case watchErr == nil && t.Kind == Sharded:
		return OK, "sharded cluster (mongos); a change stream on the collection opens"
	case watchErr == nil:
		return Warn, fmt.Sprintf("the server describes itself as %s (no setName, not mongos) yet opened a change stream; "+
			"real MongoDB needs a replica set or sharded cluster for change streams", t.Kind)
	case isUnauthorized(watchErr):
		return Fail, "open a change stream: " + acc.denial("changeStream", "find")
	case t.Kind == NotInitiated:
		return Fail, "mongod runs with --replSet but the replica set was never initiated: run rs.initiate()"
	case needsRS || t.Kind == Standalone:
		return Fail, "standalone server: change streams need a replica set or sharded cluster " +
			"(start mongod with --replSet and run rs.initiate(); a one-node replica set is enough)"
	}
	return Fail, fmt.Sprintf("%s, but opening a change stream failed: %v", t.Kind, watchErr)
}
