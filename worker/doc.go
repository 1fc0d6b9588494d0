// Package worker is the custom-data worker's IO, one subsystem per
// package:
//
//   - authsync: auth events → triggers → custom-data writes (a JetStream
//     pull consumer; ack only after MongoDB acknowledged the writes).
//   - customdata: the custom-data collection: one document per user,
//     keyed by the user-id field and protected by a unique index; the
//     writer and its fault vocabulary (Outage, Retry, Permanent).
//   - notify: custom-data changes → invalidation notices on JetStream
//     (a MongoDB change feed, checkpointed after each acknowledged
//     publish; one leader by lease; flush-all on any loss of continuity).
//
// This package holds Config (each setting both flows share, once: Data and
// Streams) and Worker (New, Run, Checks), which connects to MongoDB and
// NATS (ConnectMongo, ConnectNATS), provisions, and runs the flows.
// Delivery is at least once in both flows; effects are idempotent
// ($set, $max, $setOnInsert, delete), so redelivery is harmless.
package worker
