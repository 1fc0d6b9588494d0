package issuer

import "errors"

// Errors a caller tests with errors.Is.
var (
	// ErrOversize: the user's document is larger than the size limit and the
	// source was configured to refuse such documents. The returned Data still
	// names the document (DocumentID, Size) but carries no content.
	ErrOversize = errors.New("custom data document over the size limit")
	// ErrNoFreshness: a cache with neither notices nor a TTL would serve a
	// value forever after it changed.
	ErrNoFreshness = errors.New("cache needs notices (WithNotices) or a TTL to stay fresh")
	// ErrNoticesNotConfigured: Run was called on a cache built without
	// WithNotices.
	ErrNoticesNotConfigured = errors.New("cache has no notice feed configured")
	// ErrNoticesLost: the NATS connection under the notice feed was closed
	// for good; the cache has been flushed and reads through to MongoDB
	// until a new Run follows the notices again.
	ErrNoticesLost = errors.New("notice feed lost: NATS connection closed")
)

// Why Run is not following; each ends one follow and starts another.
var (
	errConnClosed   = errors.New("NATS connection closed")
	errInterrupted  = errors.New("NATS connection interrupted")
	errNotConnected = errors.New("NATS not connected (reconnecting)")
	errStreamReset  = errors.New("notice stream was recreated or reset")
	errConsumerLost = errors.New("notice consumer failed")
)
