package authsync

import "errors"

// errBlockedByEarlierWrite marks messages whose writes were skipped because
// an earlier write for the same user in the batch failed: applying them
// out of order could be wrong (a CREATE after a failed DELETE).
var errBlockedByEarlierWrite = errors.New("an earlier write for the same user in this batch failed")

// errNATSDisconnected stands for a fetch that could not be sent.
var errNATSDisconnected = errors.New("NATS connection is not connected")

// Errors reported by Consumer.Healthy (wrapped).
var (
	// ErrConsumerNotRunning: Run has not started or has returned.
	ErrConsumerNotRunning = errors.New("auth consumer is not running")
	// ErrConsumerUnhealthy: fetching auth events from NATS or writing to
	// MongoDB has been failing for longer than UnhealthyAfter.
	ErrConsumerUnhealthy = errors.New("auth consumer unhealthy")
)

// ErrNotProvisioned is returned (wrapped) in verify mode when a stream or
// the consumer does not exist.
var ErrNotProvisioned = errors.New("JetStream resources for auth events are not provisioned")

// ErrIncompatibleProvisioning is returned (wrapped) in verify mode when a
// stream or the consumer exists with settings the worker cannot work with.
var ErrIncompatibleProvisioning = errors.New("JetStream resources for auth events have incompatible settings")
