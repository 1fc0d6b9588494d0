// Package authsync turns auth events into custom-data writes.
//
// Consumer pulls authentication events (LOGIN, CREATE, DELETE) from a
// JetStream stream in batches, decodes them strictly (events.Decoder),
// asks the trigger set (triggers.Set.Decide) what to write, coalesces the
// batch's writes per user (triggers.Coalesce) and applies each round as
// one unordered MongoDB BulkWrite (customdata.Writer.Apply). A message is
// acknowledged only after MongoDB acknowledged its writes with the
// configured write concern. Each message is settled once (Consumer.finish):
// ack, Nak with the redelivery delay, or dead-letter. Messages that can
// never succeed (invalid events, permanent trigger or write errors, too
// many deliveries) are copied to a dead-letter stream with headers that
// say why (events.HeaderDLQReason, …), then terminated. An unavailable
// MongoDB is not the messages' fault (customdata.Outage): the batch is
// held and retried in place, not redelivered or dead-lettered.
//
// Provision creates (or in verify mode checks) the auth-event stream, the
// dead-letter stream and the durable consumer.
package authsync
