package customdata

import "errors"

// ErrKeyHasNUL: a write names a field with a NUL byte, which a BSON key
// cannot hold. The driver's bson.Marshal refuses such a key with an error;
// the bsoncore appenders would panic, so the keys are checked first.
var ErrKeyHasNUL = errors.New("BSON key contains a NUL byte")

// ErrUserIndexMissing is reported (wrapped) by Guard.Healthy
// while the custom-data collection lacks its unique user index: after it
// was dropped or renamed away, "one document per user" does not hold until
// the index is back.
var ErrUserIndexMissing = errors.New("unique user index missing")

// ErrCollectionUncheckable is reported (wrapped) by Guard.Healthy while
// MongoDB refuses the guard's listCollections or listIndexes for a reason
// waiting cannot fix (a missing privilege): the guard cannot see whether
// "one document per user" holds.
var ErrCollectionUncheckable = errors.New("custom-data collection cannot be checked")

// ErrDuplicateUsers is returned (wrapped) by EnsureUserIndex when several
// documents share a user id and AllowDuplicates is off.
var ErrDuplicateUsers = errors.New("custom-data collection has several documents for the same user")

// ErrUserIndexConflict is returned (wrapped) when an index on the user-id
// field exists with options that prevent the unique index.
var ErrUserIndexConflict = errors.New("conflicting index on the user-id field")

// ErrIndexBuildTimeout is returned (wrapped, with context.DeadlineExceeded)
// when EnsureUserIndex did not finish within IndexTimeout: the unique index
// build is waiting for its commit quorum, or MongoDB does not answer. The
// build goes on on the server; calling again waits for it again.
var ErrIndexBuildTimeout = errors.New("the unique user-id index is not ready")
