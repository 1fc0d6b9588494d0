// Package worker does all the IO of the custom-data worker. It runs two
// independent flows:
//
// Auth events → triggers → MongoDB: package authsync, writing through
// package customdata.
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
