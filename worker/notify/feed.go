package notify

import (
	"context"
	"errors"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/outage"
)

// feedCursor is what the term reads a change feed through: the
// driver's *mongo.ChangeStream, or in tests one that fails the way a real
// server does and the stand-in cannot. Implementations must be comparable
// (the term tells feeds apart with ==).
type feedCursor interface {
	TryNext(ctx context.Context) bool
	// Event is the event TryNext moved to (ChangeStream.Current).
	Event() bson.Raw
	Err() error
	ResumeToken() bson.Raw
	RemainingBatchLength() int
	Close(ctx context.Context) error
}

// driverFeed adapts *mongo.ChangeStream to feedCursor.
type driverFeed struct{ *mongo.ChangeStream }

func (d driverFeed) Event() bson.Raw { return d.Current }

// feedSource opens the change feed: the collection's Watch, or in tests
// one that fails the way a real server does and the stand-in cannot.
type feedSource interface {
	open(ctx context.Context, pipeline mongo.Pipeline, from *checkpoint,
		opts *options.ChangeStreamOptionsBuilder) (feedCursor, error)
}

// watchFeed is the production feedSource: the collection's Watch.
type watchFeed struct{ coll *mongo.Collection }

func (w watchFeed) open(ctx context.Context, pipeline mongo.Pipeline, _ *checkpoint,
	opts *options.ChangeStreamOptionsBuilder) (feedCursor, error) {
	cs, err := w.coll.Watch(ctx, pipeline, opts)
	if err != nil {
		return nil, err
	}
	return driverFeed{cs}, nil
}

// feedPipeline projects each change event down to what a notice
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
//
// $changeStreamSplitLargeEvent (MongoDB 7.0, 6.0.9) is not used. Every
// server that has it evaluates $bsonSize, so its events are projected as
// above and stay far below 16 MB; the stage splits by top-level field only,
// so it could not split a whole fullDocument near 16 MB (the case that
// does exceed the limit, on servers without $bsonSize) either; and the
// fragments would have to be reassembled. A change the server cannot
// return is handled instead by maxPositionRefusals: retried, then a
// flush-all (position_unreadable) and a feed from now.
//
// A partitioned notifier's feed starts with its partition's $match
// (partition.matchStage), before the projection.
func feedPipeline(userIDField string, serverSize bool, part partition) mongo.Pipeline {
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
		// Path components only (names, array indexes), no values.
		{Key: fieldDisambiguated, Value: "$updateDescription.disambiguatedPaths"},
	}
	if serverSize {
		project = append(project,
			bson.E{Key: "fullDocument._id", Value: 1},
			bson.E{Key: "fullDocument." + userIDField, Value: 1},
			bson.E{Key: fieldDocSize, Value: bson.D{{Key: "$bsonSize", Value: "$fullDocument"}}})
	} else {
		project = append(project, bson.E{Key: "fullDocument", Value: 1})
	}
	pipeline := mongo.Pipeline{{{Key: "$project", Value: project}}}
	if match := part.matchStage(); match != nil {
		pipeline = append(mongo.Pipeline{match}, pipeline...)
	}
	return pipeline
}

// feedErrorClass says what a change-stream error means for continuity.
type feedErrorClass int

const (
	// feedTransient: the server or the path to it is unavailable, or
	// the server is busy (elections, restarts, killed or interrupted
	// operations); reopen from the checkpoint with backoff, no flush.
	feedTransient feedErrorClass = iota
	// feedTimedOut: the server gave up on the operation within its time
	// limit (MaxTimeMSExpired). It answers, so it is alive: an open that
	// keeps timing out is retried with a wider limit, and past a bound
	// the feed starts from now after a flush-all.
	feedTimedOut
	// feedHistoryLost: the server says the resume point is gone.
	feedHistoryLost
	// feedTokenInvalid: the server says the token is not a valid token.
	feedTokenInvalid
	// feedPipelineUnsupported: the server cannot evaluate an operator
	// of the pipeline.
	feedPipelineUnsupported
	// feedRefused: any other server error. It is retried from the
	// checkpoint like a transient one; the same refusal repeated at one
	// position (maxPositionRefusals) means that position cannot be read.
	feedRefused
)

func (c feedErrorClass) String() string {
	switch c {
	case feedTransient:
		return "transient"
	case feedTimedOut:
		return "timed_out"
	case feedHistoryLost:
		return "history_lost"
	case feedTokenInvalid:
		return "token_invalid"
	case feedPipelineUnsupported:
		return "pipeline_unsupported"
	}
	return "refused"
}

// An open and a read are judged alike: the aggregate that opens a change
// stream never carries ResumableChangeStreamError (the server adds it to
// getMore errors only), so an open is judged by code when it has no
// other label.

// Server codes. Names and meanings from MongoDB's src/mongo/base/error_codes.yml;
// the 5-digit ones are assertion ids of old servers' change-stream code.
var (
	historyLostCodes = []int{
		286,   // ChangeStreamHistoryLost (4.4+): the resume point fell off the oplog
		280,   // ChangeStreamFatalError: 4.0-4.2 report a resume token not found in the oplog with it
		40576, // 3.6: resume point may no longer be in the oplog
		40585, // 3.6-4.0: resume token not found
	}
	tokenInvalidCodes = []int{
		260, // InvalidResumeToken
	}
	pipelineUnsupportedCodes = []int{
		168,   // InvalidPipelineOperator: unknown expression, e.g. $bsonSize before 4.4
		15999, // invalid operator (older servers)
		31325, // unknown expression operator
	}
)

// classifyFeedError classifies an error from opening or reading a change
// stream: what it says about the position (lost, invalid, unreadable) and
// whether retrying from the checkpoint is the answer. A server's answer is
// read first, its labels before its codes: driver v2 makes a server's
// MaxTimeMSExpired wrap context.DeadlineExceeded, so testing for the
// context first would take the server's time limit for a client-side one.
// An error that is not a server's answer (network, a client-side deadline,
// server selection, a closed client) is transient.
func classifyFeedError(err error) feedErrorClass {
	var se mongo.ServerError
	if err == nil || !errors.As(err, &se) || outage.HasDownLabel(err) || mongo.IsNetworkError(err) {
		return feedTransient
	}
	has := func(list []int) bool { return slices.ContainsFunc(list, se.HasErrorCode) }
	switch {
	case has(historyLostCodes):
		return feedHistoryLost
	case has(tokenInvalidCodes):
		return feedTokenInvalid
	case has(pipelineUnsupportedCodes):
		return feedPipelineUnsupported
	case has(outage.TimeLimitCodes):
		return feedTimedOut
	case has(outage.DownCodes), has(outage.AccessCodes):
		// The same "is it down?" codes as every other MongoDB call; access
		// refused is fixed by an operator, and the feed then resumes from
		// the checkpoint. Not exhaustive: an unlisted error is retried too
		// (feedRefused), it only counts towards maxPositionRefusals.
		return feedTransient
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, mongo.ErrClientDisconnected):
		// A server error with none of the codes above that carries a
		// context error ended on the client's side.
		return feedTransient
	}
	return feedRefused
}

// flushReasonForRefusedToken is the flush reason when the server refused
// to resume from the checkpoint with an error of class c.
func flushReasonForRefusedToken(c feedErrorClass) events.FlushReason {
	if c == feedHistoryLost {
		return events.FlushHistoryLost
	}
	return events.FlushBadCheckpoint
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
		return false, classifyFeedError(err) == feedPipelineUnsupported
	}
	defer func() { _ = cur.Close(context.WithoutCancel(ctx)) }()
	if cur.Next(ctx) {
		return true, true
	}
	return false, classifyFeedError(cur.Err()) == feedPipelineUnsupported
}

// feedOptions are the change-stream options for a start position (nil:
// from now).
//
// The first batch is empty (batchSize 0): the aggregate then answers as
// soon as the feed is set up, instead of scanning the oplog from the
// resume point until it fills a batch within the open's time limit, which
// on a busy cluster minutes behind a quiet collection can time out on
// every attempt. The scan continues in getMores, whose post-batch resume
// tokens the idle path checkpoints, so a long scan moves the checkpoint
// forward. The driver (v2) sends the option as the aggregate's
// cursor.batchSize and omits batchSize from getMores when it is 0, so
// getMores use the server's default batch size. A resume point lost from
// history may then be reported by the first getMore instead of the
// aggregate; the term treats both alike (term.run).
func feedOptions(cfg Config, from *checkpoint) *options.ChangeStreamOptionsBuilder {
	opts := options.ChangeStream().SetFullDocument(options.UpdateLookup).SetMaxAwaitTime(cfg.MaxAwaitTime).
		SetBatchSize(0)
	if cfg.PreAndPostImages {
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
