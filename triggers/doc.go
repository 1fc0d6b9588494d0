// Package triggers decides what an authentication event should do to the
// custom-data collection. It is pure logic: an event goes in, intended
// writes come out. Nothing here knows NATS or MongoDB exist; the worker
// performs the writes and acknowledges the event.
//
// The flow for one event:
//
//	events.AuthEvent → Set.Decide → []Write → Coalesce (per batch) → worker
//
// Built-in triggers (lastLogin, createOnSignup, deleteOnUserDelete),
// declarative rules from a config file (Config, LoadConfig, NewSet) and
// handlers registered from Go (Set.Register) all implement Handler and are
// filtered by operation and provider. Set.Decide checks every write with
// ValidateWrite, so no handler can name an operator, a path or _id.
//
// Coalesce turns the writes of a batch into rounds of merged writes, one
// per user per round; executing the rounds in order has exactly the effect
// of executing the writes in order.
package triggers
