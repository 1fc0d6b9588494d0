package ingest

import "errors"

// Errors a caller tests with errors.Is.
var (
	// ErrNoEndpoints: New was given no source to serve.
	ErrNoEndpoints = errors.New("ingest: no source configured (Clerk, Kratos or Auth0)")
)
