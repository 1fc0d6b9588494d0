// Package outage answers one question for the whole worker: does this error
// mean a dependency (MongoDB or NATS) is unavailable for now, so that the
// same call may succeed later without anyone changing the request?
//
// An outage is waited out in place (retried with backoff, never counted
// against a message); anything else is the request's or the
// configuration's fault. Error labels are read first, server codes only as
// a fallback for servers and commands that attach no label. Only the
// driver's stable API (package mongo) is used, never its x/ packages.
package outage

import (
	"context"
	"crypto/tls"
	"errors"
	"io/fs"
	"net"
	"slices"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Is reports whether err means MongoDB or NATS is unavailable for now.
// Startup steps retry such errors with backoff and stop on any other.
func Is(err error) bool {
	return MongoDB(err) || NATS(err)
}

// DownLabels are the labels the server or driver attaches to errors that
// a retry can fix: the path to the server failed, or the server is busy
// (elections, restarts, overload). The time-limit labels are not here:
// see TimedOut.
var DownLabels = []string{
	"NetworkError",
	"RetryableError",
	"RetryableWriteError",
	"ResumableChangeStreamError",
	"TransientTransactionError",
	"SystemOverloadedError",
}

// DownCodes are server codes that mean "the server cannot serve this
// right now" (elections, restarts, load, killed or interrupted
// operations), whatever the operation, for servers (and commands) that
// attach no label. Names from MongoDB's src/mongo/base/error_codes.yml.
var DownCodes = []int{
	6,     // HostUnreachable
	7,     // HostNotFound
	43,    // CursorNotFound
	63,    // StaleShardVersion
	89,    // NetworkTimeout
	91,    // ShutdownInProgress
	133,   // FailedToSatisfyReadPreference
	134,   // ReadConcernMajorityNotAvailableYet
	136,   // CappedPositionLost
	150,   // StaleEpoch
	175,   // QueryPlanKilled
	189,   // PrimarySteppedDown
	202,   // NetworkInterfaceExceededTimeLimit
	216,   // ElectionInProgress
	234,   // RetryChangeStream
	237,   // CursorKilled
	279,   // ClientDisconnect
	317,   // ConnectionPoolExpired
	365,   // TemporarilyUnavailable
	384,   // ConnectionError
	402,   // ResourceExhausted
	9001,  // SocketException
	10107, // NotWritablePrimary
	11600, // InterruptedAtShutdown
	11601, // Interrupted
	11602, // InterruptedDueToReplStateChange
	13388, // StaleConfig
	13435, // NotPrimaryNoSecondaryOk
	13436, // NotPrimaryOrSecondary
}

// AccessCodes: authentication or authorization failed. An operator fixes
// that, not the request: MongoDB counts them as an outage.
var AccessCodes = []int{
	11, // UserNotFound
	13, // Unauthorized
	18, // AuthenticationFailed
}

// WriteConcernCodes: the write concern could not be satisfied (yet).
var WriteConcernCodes = []int{
	64,  // WriteConcernFailed (wtimeout)
	100, // UnsatisfiableWriteConcern
}

// TimeLimitCodes: the server gave up on the operation within its time
// limit. It answers, so it is up; for a write that is still an outage
// (retried in place), a change-stream open treats it on its own.
var TimeLimitCodes = []int{
	50,  // MaxTimeMSExpired
	262, // ExceededTimeLimit (mongos)
}

// MongoDB reports whether err, returned for a whole MongoDB call, means
// the server or the path to it is unavailable rather than that the
// request was bad. A write-concern error counts: the writes may have been
// applied but are not durable as asked, and the worker's writes are
// idempotent, so the whole call is retried.
func MongoDB(err error) bool {
	if err == nil {
		return false
	}
	if HasDownLabel(err) || mongo.IsNetworkError(err) || mongo.IsTimeout(err) ||
		errors.Is(err, context.Canceled) || errors.Is(err, mongo.ErrClientDisconnected) {
		return true
	}
	if Unreachable(err) {
		return true
	}
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) {
		// Per-operation write errors are the operations' business.
		return bwe.WriteConcernError != nil
	}
	var we mongo.WriteException
	if errors.As(err, &we) && we.WriteConcernError != nil {
		return true
	}
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		return MongoDBCode(int(ce.Code))
	}
	return false
}

// MongoDBCode reports whether a server code (of a whole call, or of one
// operation of a bulk write) means MongoDB is unavailable: one of
// DownCodes, AccessCodes, WriteConcernCodes or TimeLimitCodes.
func MongoDBCode(code int) bool {
	for _, list := range [][]int{DownCodes, AccessCodes, WriteConcernCodes, TimeLimitCodes} {
		if slices.Contains(list, code) {
			return true
		}
	}
	return false
}

// HasDownLabel reports whether err carries one of DownLabels.
func HasDownLabel(err error) bool {
	var le mongo.LabeledError
	return errors.As(err, &le) && slices.ContainsFunc(DownLabels, le.HasErrorLabel)
}

// Unreachable reports whether err is the network's answer rather than a
// server's: a refused or reset connection, a name that does not resolve,
// a deadline, or a TLS handshake that cannot verify the server (fixed by
// an operator, like a password). The driver returns these, wrapped in
// its own connection and server-selection errors, when no server could
// be reached at all.
//
// A file that cannot be read (a tlsCAFile or tlsCertificateKeyFile named in
// the URI) is not: its syscall.Errno satisfies net.Error, but retrying
// cannot fix it.
func Unreachable(err error) bool {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return false
	}
	var ne net.Error
	var ve *tls.CertificateVerificationError
	return errors.As(err, &ne) || errors.As(err, &ve) || errors.Is(err, context.DeadlineExceeded)
}

// NATS reports whether err means NATS or JetStream is unavailable for now:
// not connected, no responders, timeouts, or JetStream without quorum or
// leader yet (a cluster starting or a stream's replicas re-electing).
func NATS(err error) bool {
	if err == nil {
		return false
	}
	for _, target := range []error{
		nats.ErrTimeout, nats.ErrNoResponders, nats.ErrDisconnected,
		nats.ErrConnectionReconnecting, nats.ErrNoServers, nats.ErrConnectionDraining,
		jetstream.ErrNoHeartbeat, jetstream.ErrJetStreamPublisherClosed,
		context.DeadlineExceeded,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.Code {
		case 503, 408:
			return true
		}
	}
	return false
}

// FirstCode is the first server code of err, 0 if none. Logs carry the
// code, never the server's message: messages may quote document values.
func FirstCode(err error) int {
	var se mongo.ServerError
	if errors.As(err, &se) {
		if codes := se.ErrorCodes(); len(codes) > 0 {
			return codes[0]
		}
	}
	return 0
}
