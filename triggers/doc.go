// Package triggers decides what an authentication event should do to the
// custom-data collection. It is pure logic: an event goes in, intended
// writes come out. Nothing here knows NATS or MongoDB exist; the worker
// performs the writes and acknowledges the event.
//
// The flow for one event:
//
//	events.AuthEvent → Set.Decide → []Write → Coalesce (per batch) → worker
//
// Built-in triggers (lastLogin, create-on-signup, delete-on-user-delete),
// declarative rules from a config file and handlers registered from Go all
// implement Handler and are filtered by operation and provider.
package triggers
