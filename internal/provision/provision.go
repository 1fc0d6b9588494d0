// Package provision names how the worker treats its JetStream resources
// (the auth-event and dead-letter streams, the consumer, the notice
// stream and buckets): create them, or only verify what an operator made.
package provision

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Mode is Create or Verify (the spelling of CUSTOMDATA_PROVISION).
type Mode string

// Provision modes.
const (
	// Create creates or updates the streams, consumer and buckets at
	// startup (idempotent).
	Create Mode = "create"
	// Verify only checks that operator-provisioned resources exist with
	// compatible settings.
	Verify Mode = "verify"
)

// Validate accepts Create and Verify.
func Validate(m Mode) error {
	switch m {
	case Create, Verify:
		return nil
	}
	return fmt.Errorf("provision mode %q: want %q or %q", m, Create, Verify)
}

// Stream defaults.
const (
	DefaultReplicas        = 1
	DefaultDuplicateWindow = 2 * time.Minute
)

// Streams are the JetStream settings shared by every stream and bucket the
// worker provisions (auth events, dead letters, notices, checkpoints,
// lease): set once, used by both flows.
type Streams struct {
	// Mode is Create (default) or Verify.
	Mode Mode
	// Replicas of every stream and KV bucket the worker creates (1 to 5).
	// Default 1.
	Replicas int
	// DuplicateWindow is the de-duplication window (Nats-Msg-Id) of the
	// auth-event, dead-letter and notice streams. Default 2m.
	DuplicateWindow time.Duration
}

// SetDefaults replaces zero values by the defaults.
func (s *Streams) SetDefaults() {
	s.Mode = cmp.Or(s.Mode, Create)
	s.Replicas = cmp.Or(s.Replicas, DefaultReplicas)
	s.DuplicateWindow = cmp.Or(s.DuplicateWindow, DefaultDuplicateWindow)
}

// Validate checks the settings after defaults are applied.
func (s Streams) Validate() error {
	s.SetDefaults()
	var errs []error
	if err := Validate(s.Mode); err != nil {
		errs = append(errs, err)
	}
	if s.Replicas < 1 || s.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas must be 1 to 5, got %d", s.Replicas))
	}
	if s.DuplicateWindow < 0 {
		errs = append(errs, errors.New("duplicate window must not be negative"))
	}
	return errors.Join(errs...)
}

// ValidateName accepts a JetStream stream or consumer name: non-empty,
// without '.', '*', '>', '/', '\\' or whitespace, which the server refuses
// ("invalid stream name") or which would name a file path in its store.
// what names the setting in the error ("stream", "consumer", …).
func ValidateName(what, name string) error {
	if name == "" || strings.ContainsAny(name, ".*>/\\ \t\r\n") {
		return fmt.Errorf("%s name %q must be non-empty and contain no '.', '*', '>', '/', '\\' or whitespace", what, name)
	}
	return nil
}
