package worker

import (
	"context"
	"errors"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/customdata-worker/customdata-worker/events"
)

// changeStreamPipeline projects each change event down to what a notice
// needs, so documents do not flow through the worker:
//
//   - the resume token (_id, kept implicitly), operationType, documentKey,
//     clusterTime, ns, to;
//   - fullDocument._id, fullDocument.<userIdField> and
//     fullDocumentBeforeChange.<userIdField>;
//   - the names (not values) of updated fields, removedFields and
//     truncatedArrays;
//   - the document's size via $bsonSize, for the oversize guard.
//
// When the server cannot evaluate $bsonSize (serverSize false) the whole
// fullDocument is kept and measured by the worker instead.
//
// updatedFieldNames guards $objectToArray with $cond/$ifNull because some
// servers reject $objectToArray of a missing field (MongoDB returns null
// for it), and insert/delete events have no updateDescription.
func changeStreamPipeline(userIDField string, serverSize bool) mongo.Pipeline {
	updatedFields := "$updateDescription.updatedFields"
	project := bson.D{
		{Key: "operationType", Value: 1},
		{Key: "documentKey", Value: 1},
		{Key: "clusterTime", Value: 1},
		{Key: "ns", Value: 1},
		{Key: "to", Value: 1},
		{Key: "fullDocumentBeforeChange." + userIDField, Value: 1},
		{Key: fieldUpdatedNames, Value: bson.D{{Key: "$cond", Value: bson.A{
			bson.D{{Key: "$eq", Value: bson.A{bson.D{{Key: "$ifNull", Value: bson.A{updatedFields, nil}}}, nil}}},
			nil,
			bson.D{{Key: "$map", Value: bson.D{
				{Key: "input", Value: bson.D{{Key: "$objectToArray", Value: updatedFields}}},
				{Key: "as", Value: "f"},
				{Key: "in", Value: "$$f.k"},
			}}},
		}}}},
		{Key: fieldRemoved, Value: "$updateDescription.removedFields"},
		{Key: fieldTruncated, Value: "$updateDescription.truncatedArrays"},
	}
	if serverSize {
		project = append(project,
			bson.E{Key: "fullDocument._id", Value: 1},
			bson.E{Key: "fullDocument." + userIDField, Value: 1},
			bson.E{Key: fieldDocSize, Value: bson.D{{Key: "$bsonSize", Value: "$fullDocument"}}})
	} else {
		project = append(project, bson.E{Key: "fullDocument", Value: 1})
	}
	return mongo.Pipeline{{{Key: "$project", Value: project}}}
}

// streamErrorClass says what a change-stream error means for continuity.
type streamErrorClass int

const (
	// streamTransient: the server or the path to it is unavailable;
	// reopen from the checkpoint with backoff, no flush.
	streamTransient streamErrorClass = iota
	// streamHistoryLost: the server says the resume point is gone.
	streamHistoryLost
	// streamTokenInvalid: the server says the token is not a valid token.
	streamTokenInvalid
	// streamPipelineUnsupported: the server cannot evaluate an operator
	// of the pipeline.
	streamPipelineUnsupported
	// streamRefused: any other refusal. When it answers an open with a
	// resume token, the notifier checks whether the token is the cause.
	streamRefused
)

func (c streamErrorClass) String() string {
	switch c {
	case streamTransient:
		return "transient"
	case streamHistoryLost:
		return "history_lost"
	case streamTokenInvalid:
		return "token_invalid"
	case streamPipelineUnsupported:
		return "pipeline_unsupported"
	}
	return "refused"
}

// Server codes, see https://github.com/mongodb/mongo/blob/master/src/mongo/base/error_codes.yml.
var (
	historyLostCodes = []int{
		286,   // ChangeStreamHistoryLost
		280,   // ChangeStreamFatalError (resume point no longer in the oplog, 4.0-4.2)
		40576, // resume point no longer in the oplog (3.6)
		40585, // resume token not found
	}
	tokenInvalidCodes = []int{
		260, // InvalidResumeToken
	}
	pipelineUnsupportedCodes = []int{
		168,   // InvalidPipelineOperator: unknown expression, e.g. $bsonSize before 4.4
		15999, // invalid operator (older servers)
		31325, // unknown expression operator
	}
	transientStreamCodes = []int{
		6,     // HostUnreachable
		7,     // HostNotFound
		43,    // CursorNotFound
		50,    // MaxTimeMSExpired
		63,    // StaleShardVersion
		89,    // NetworkTimeout
		91,    // ShutdownInProgress
		133,   // FailedToSatisfyReadPreference
		150,   // StaleEpoch
		189,   // PrimarySteppedDown
		234,   // RetryChangeStream
		262,   // ExceededTimeLimit
		9001,  // SocketException
		10107, // NotWritablePrimary
		11600, // InterruptedAtShutdown
		11602, // InterruptedDueToReplStateChange
		13388, // StaleConfig
		13435, // NotPrimaryNoSecondaryOk
		13436, // NotPrimaryOrSecondary
	}
)

// classifyStreamError classifies an error from opening or reading a change
// stream.
func classifyStreamError(err error) streamErrorClass {
	if err == nil {
		return streamTransient
	}
	if mongo.IsNetworkError(err) || mongo.IsTimeout(err) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, context.Canceled) || errors.Is(err, mongo.ErrClientDisconnected) ||
		errors.As(err, &topology.ServerSelectionError{}) || errors.As(err, &topology.ConnectionError{}) {
		return streamTransient
	}
	var se mongo.ServerError
	if !errors.As(err, &se) {
		return streamTransient
	}
	codes := se.ErrorCodes()
	has := func(list []int) bool {
		return slices.ContainsFunc(codes, func(c int) bool { return slices.Contains(list, c) })
	}
	switch {
	case has(historyLostCodes):
		return streamHistoryLost
	case has(tokenInvalidCodes):
		return streamTokenInvalid
	case has(pipelineUnsupportedCodes):
		return streamPipelineUnsupported
	case se.HasErrorLabel("ResumableChangeStreamError"), se.HasErrorLabel("NetworkError"),
		se.HasErrorLabel("RetryableWriteError"), has(transientStreamCodes):
		return streamTransient
	}
	return streamRefused
}

// flushReasonForRefusedToken is the flush reason when the server refused
// to resume from the checkpoint with an error of class c.
func flushReasonForRefusedToken(c streamErrorClass) events.FlushReason {
	if c == streamHistoryLost {
		return events.FlushHistoryLost
	}
	return events.FlushBadCheckpoint
}

// serverErrorCode is the first server code of err, 0 if none (for logs:
// server messages may quote values).
func serverErrorCode(err error) int {
	var se mongo.ServerError
	if errors.As(err, &se) {
		if codes := se.ErrorCodes(); len(codes) > 0 {
			return codes[0]
		}
	}
	return 0
}

// probeServerSize asks the server to evaluate $bsonSize on one document of
// the collection. conclusive is false when the collection is empty (there
// was nothing to evaluate) or the probe failed for another reason.
func probeServerSize(ctx context.Context, coll *mongo.Collection) (supported, conclusive bool) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cur, err := coll.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$limit", Value: 1}},
		{{Key: "$project", Value: bson.D{{Key: "_id", Value: 0}, {Key: "s", Value: bson.D{{Key: "$bsonSize", Value: "$$ROOT"}}}}}},
	})
	if err != nil {
		return false, classifyStreamError(err) == streamPipelineUnsupported
	}
	defer func() { _ = cur.Close(context.WithoutCancel(ctx)) }()
	if cur.Next(ctx) {
		return true, true
	}
	return false, classifyStreamError(cur.Err()) == streamPipelineUnsupported
}

// watchOptions are the change-stream options for a start position (nil:
// from now).
func (n *Notifier) watchOptions(from *checkpoint) *options.ChangeStreamOptionsBuilder {
	opts := options.ChangeStream().SetFullDocument(options.UpdateLookup).SetMaxAwaitTime(n.cfg.MaxAwaitTime)
	if n.cfg.PreAndPostImages {
		// Only requested when configured: servers before 6.0 reject the
		// option, and without pre-images enabled on the collection it
		// would yield nothing.
		opts.SetFullDocumentBeforeChange(options.WhenAvailable)
	}
	if from != nil {
		if from.StartAfter {
			opts.SetStartAfter(bson.Raw(from.Token))
		} else {
			opts.SetResumeAfter(bson.Raw(from.Token))
		}
	}
	return opts
}
