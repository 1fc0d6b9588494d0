// Package worker does all the IO of the custom-data worker. It runs two
// independent flows:
//
// Auth events → triggers → MongoDB. AuthConsumer pulls authentication
// events (LOGIN, CREATE, DELETE) from a JetStream stream in batches,
// decodes them strictly (events.Decoder), asks the trigger set
// (triggers.Set.Decide) what to write, coalesces the batch's writes per
// user (triggers.Coalesce) and applies each round as one unordered MongoDB
// BulkWrite on the custom-data collection: one document per user, keyed by
// the user-id field and protected by a unique index (EnsureUserIndex).
// A message is acknowledged only after MongoDB acknowledged its writes
// with the configured write concern. Messages that can never succeed
// (invalid events, permanent trigger or write errors, too many deliveries)
// are copied to a dead-letter stream with headers that say why, then
// terminated. An unavailable MongoDB is not the messages' fault: the batch
// is held and retried in place, not redelivered or dead-lettered.
//
// MongoDB change stream → notices → JetStream. A change stream on the
// custom-data collection turns every change into an invalidation notice
// (events.Notice) published on NATS, so token issuers drop cached custom
// data. The resume position is checkpointed only after the notice was
// acknowledged, a lease keeps one publisher active, and any loss of
// continuity publishes a flush-all notice.
//
// Delivery is at least once in both flows; effects are idempotent
// ($set, $max, $setOnInsert, delete), so redelivery is harmless.
package worker
