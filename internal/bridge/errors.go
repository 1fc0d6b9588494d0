package bridge

import "errors"

// Errors a caller tests with errors.Is.
var (
	// ErrNoEndpoints: New was given no endpoint to serve.
	ErrNoEndpoints = errors.New("bridge: no endpoint configured (Supabase, Hydra or generic)")
	// ErrReservedClaim: the configured claim name is one the identity
	// servers set or check themselves.
	ErrReservedClaim = errors.New("bridge: claim name is reserved")
)
