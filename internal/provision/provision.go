// Package provision names how the worker treats its JetStream resources
// (the auth-event and dead-letter streams, the consumer, the notice
// stream and buckets): create them, or only verify what an operator made.
package provision

import "fmt"

// Mode is Create or Verify. It is an alias of string so that
// configuration can hold it as a plain string.
type Mode = string

// Provision modes.
const (
	// Create creates or updates the streams, consumer and buckets at
	// startup (idempotent).
	Create = "create"
	// Verify only checks that operator-provisioned resources exist with
	// compatible settings.
	Verify = "verify"
)

// Validate accepts Create and Verify.
func Validate(m Mode) error {
	switch m {
	case Create, Verify:
		return nil
	}
	return fmt.Errorf("provision mode %q: want %q or %q", m, Create, Verify)
}
