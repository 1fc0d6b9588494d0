// Package dlq is the operator's view of the dead-letter stream: list and
// show dead-lettered auth events, send them back to their original
// subject once their cause is fixed (redrive), and remove them (purge).
//
// A dead letter is the original event with the Dlq-* headers of
// package events (worker/authsync writes them). A redrive publishes the
// event again on Dlq-Original-Subject with a new Nats-Msg-Id (the
// original id plus ".redrive-N", so the stream's duplicate window does
// not swallow it, while repeating the same redrive is still
// de-duplicated), Dlq-Original-Msg-Id and Dlq-Redrive-Count = N; it
// deletes the dead letter only after JetStream acknowledged the publish.
// An event that fails again is dead-lettered again by the worker with
// that count: nothing redrives by itself, so nothing loops.
package dlq
