package triggers

import "errors"

// ErrInvalidConfig matches (errors.Is) every error of ParseConfig,
// LoadConfig, Config.Validate and NewSet caused by the configuration.
var ErrInvalidConfig = errors.New("invalid trigger config")

// ErrPermanent marks a handler error that retrying cannot fix.
var ErrPermanent = errors.New("permanent trigger error")

// ErrPanicked reports a handler that panicked (see Recover).
var ErrPanicked = errors.New("trigger panicked")
