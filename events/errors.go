package events

import "errors"

// ErrInvalidEvent matches (errors.Is) every rejection of an auth event.
var ErrInvalidEvent = errors.New("invalid auth event")

// ErrNotStored is returned when the server answered but did not store the
// event (no stream listens on the subject).
var ErrNotStored = errors.New("auth event not stored by JetStream")

// ErrInvalidSigningKey is returned (wrapped) for a seed or public key
// that is not a valid nkey of a user.
var ErrInvalidSigningKey = errors.New("invalid event signing key")
