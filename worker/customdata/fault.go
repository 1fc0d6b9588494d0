package customdata

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/internal/outage"
)

// Fault says whose fault a failed MongoDB operation is, which decides
// what happens to the messages behind it.
type Fault int

const (
	// OK: the operation was acknowledged.
	OK Fault = iota
	// Outage: the server or the path to it is unavailable. Not the
	// messages' fault: the batch is kept and the write retried in place, so
	// no delivery attempt is burnt.
	Outage
	// Retry: this operation failed and may succeed later (a
	// duplicate-key race on upsert, an unknown server error). Its messages
	// are Nak'd with a delay and count a delivery.
	Retry
	// Permanent: the server refused this operation and will refuse it
	// again (document validation, bad update). Its messages are dead-lettered.
	Permanent
)

func (f Fault) String() string {
	switch f {
	case OK:
		return "ok"
	case Outage:
		return "outage"
	case Retry:
		return "retry"
	case Permanent:
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
func classifyWriteCode(code int) Fault {
	switch {
	case outage.MongoDBCode(code):
		return Outage
	case slices.Contains(permanentWriteCodes, code):
		return Permanent
	}
	return Retry
}

// classifyBulkError maps the error of one unordered BulkWrite of n
// operations to a failure per operation. ok is false when the error cannot
// be attributed to operations (the caller then decides for the whole round).
//
// A duplicate-key error on the user-id field is a race between upserts and
// is retried; one on another unique index will repeat until someone
// changes the other document, so it is permanent.
func classifyBulkError(err error, n int, userField string) (perOp []Fault, opErrs []error, ok bool) {
	perOp = make([]Fault, n)
	opErrs = make([]error, n)
	if err == nil {
		return perOp, opErrs, true
	}
	if outage.MongoDB(err) {
		for i := range perOp {
			perOp[i] = Outage
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
		if mongo.IsDuplicateKeyError(mongo.WriteException{WriteErrors: mongo.WriteErrors{we.WriteError}}) {
			perOp[we.Index] = classifyDuplicateKey(we.WriteError, userField)
		}
		opErrs[we.Index] = codeError{code: we.Code}
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

// classifyDuplicateKey says which key collided: a collision on the user-id
// field is a race between upserts and is retried; one on another unique
// index is permanent. The server names the index's key pattern in the
// write error (keyPattern, MongoDB 4.2+); older servers only in the message
// ("... dup key: { userId: \"u1\" }"). When it cannot tell, it assumes
// the retryable upsert race.
func classifyDuplicateKey(we mongo.WriteError, userField string) Fault {
	if kp, ok := we.Raw.Lookup("keyPattern").DocumentOK(); ok {
		if first, err := kp.IndexErr(0); err == nil {
			if first.Key() == userField {
				return Retry
			}
			return Permanent
		}
	}
	_, key, found := strings.Cut(we.Message, "dup key: {")
	if !found {
		return Retry
	}
	key = strings.TrimSpace(key)
	if strings.HasPrefix(key, userField+":") || strings.HasPrefix(key, strconv.Quote(userField)+":") || strings.HasPrefix(key, ":") {
		return Retry
	}
	return Permanent
}

// codeError carries a server write error by code only: server messages
// may quote document content (duplicate keys, validation details), which
// must not reach logs or dead-letter headers.
type codeError struct{ code int }

func (e codeError) Error() string {
	return "mongodb write error code " + strconv.Itoa(e.code)
}
