package worker

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/internal/outage"
)

// writeFailure says whose fault a failed MongoDB operation is, which decides
// what happens to the messages behind it.
type writeFailure int

const (
	// writeOK: the operation was acknowledged.
	writeOK writeFailure = iota
	// writeInfra: the server or the path to it is unavailable. Not the
	// messages' fault: the batch is kept and the write retried in place, so
	// no delivery attempt is burnt.
	writeInfra
	// writeTransient: this operation failed and may succeed later (a
	// duplicate-key race on upsert, an unknown server error). Its messages
	// are Nak'd with a delay and count a delivery.
	writeTransient
	// writePermanent: the server refused this operation and will refuse it
	// again (document validation, bad update). Its messages are dead-lettered.
	writePermanent
)

func (f writeFailure) String() string {
	switch f {
	case writeOK:
		return "ok"
	case writeInfra:
		return "infrastructure"
	case writeTransient:
		return "transient"
	case writePermanent:
		return "permanent"
	}
	return "unknown"
}

// Per-operation codes that retrying the same operation cannot fix.
var permanentWriteCodes = []int{
	2,     // BadValue
	9,     // FailedToParse
	14,    // TypeMismatch
	40,    // ConflictingUpdateOperators
	52,    // DollarPrefixedFieldName
	54,    // NotSingleValueField
	56,    // EmptyFieldName
	57,    // DottedFieldName
	66,    // ImmutableField
	121,   // DocumentValidationFailure
	10334, // BSONObjectTooLarge
	17419, // document too large after update
}

// classifyWriteCode classifies the code of one operation's write error.
func classifyWriteCode(code int) writeFailure {
	switch {
	case outage.MongoDBCode(code):
		return writeInfra
	case slices.Contains(permanentWriteCodes, code):
		return writePermanent
	}
	return writeTransient
}

// classifyBulkError maps the error of one unordered BulkWrite of n
// operations to a failure per operation. ok is false when the error cannot
// be attributed to operations (the caller then decides for the whole round).
//
// A duplicate-key error on the user-id field is a race between upserts and
// is retried; one on another unique index will repeat until someone
// changes the other document, so it is permanent.
func classifyBulkError(err error, n int, userField string) (perOp []writeFailure, opErrs []error, ok bool) {
	perOp = make([]writeFailure, n)
	opErrs = make([]error, n)
	if err == nil {
		return perOp, opErrs, true
	}
	if outage.MongoDB(err) {
		for i := range perOp {
			perOp[i] = writeInfra
			opErrs[i] = infraWriteError(err)
		}
		return perOp, opErrs, true
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || len(bwe.WriteErrors) == 0 {
		return nil, nil, false
	}
	for _, we := range bwe.WriteErrors {
		if we.Index < 0 || we.Index >= n {
			return nil, nil, false
		}
		perOp[we.Index] = classifyWriteCode(we.Code)
		if isDuplicateKeyCode(we.Code) {
			perOp[we.Index] = classifyDuplicateKey(we.Message, userField)
		}
		opErrs[we.Index] = writeCodeError{code: we.Code}
	}
	return perOp, opErrs, true
}

// infraWriteError is what is logged of an outage error. A write-concern
// failure may come with write errors whose messages quote document values
// (duplicate keys), so only the write-concern part is kept.
func infraWriteError(err error) error {
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) && bwe.WriteConcernError != nil {
		return fmt.Errorf("write concern error (code %d): %s", bwe.WriteConcernError.Code, bwe.WriteConcernError.Message)
	}
	return err
}

func isDuplicateKeyCode(code int) bool { return code == 11000 || code == 11001 }

// classifyDuplicateKey reads which key collided from the server message
// ("... dup key: { userId: \"u1\" }"); when it cannot tell, it assumes the
// retryable upsert race.
func classifyDuplicateKey(message, userField string) writeFailure {
	_, key, found := strings.Cut(message, "dup key: {")
	if !found {
		return writeTransient
	}
	key = strings.TrimSpace(key)
	if strings.HasPrefix(key, userField+":") || strings.HasPrefix(key, strconv.Quote(userField)+":") || strings.HasPrefix(key, ":") {
		return writeTransient
	}
	return writePermanent
}

// writeCodeError carries a server write error by code only: server messages
// may quote document content (duplicate keys, validation details), which
// must not reach logs or dead-letter headers.
type writeCodeError struct{ code int }

func (e writeCodeError) Error() string {
	return "mongodb write error code " + strconv.Itoa(e.code)
}

// nakDelay is the redelivery delay after the numDelivered-th delivery
// failed: steps[numDelivered-1], the last step once the list is exhausted.
func nakDelay(steps []time.Duration, numDelivered uint64) time.Duration {
	if len(steps) == 0 {
		return 0
	}
	if numDelivered == 0 {
		numDelivered = 1
	}
	i := numDelivered - 1
	if i >= uint64(len(steps)) {
		i = uint64(len(steps) - 1)
	}
	return steps[i]
}
