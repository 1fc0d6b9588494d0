package authsync

import (
	"context"
)

// ackApplied acknowledges the messages finish collected in stats.acks (in
// stream order; each only after MongoDB acknowledged all its writes) with
// one round trip for all of them: a plain Ack, sent without waiting, for
// each but the last, then a DoubleAck of the last, which waits for the
// server's reply.
//
// Why one reply confirms them all: the server pushes every ack of a
// consumer into one FIFO queue (consumer.pushAck → ackMsgs) that a single
// goroutine drains in order (processInboundAcks → processAck), and it
// answers an ack that asks for a reply only once that ack was processed
// (sendAckReply; on a replicated consumer from updateAcks, after the ack
// is committed through the consumer's Raft log, which keeps the order of
// the proposals). The client writes its acks on one connection in the
// order they are sent, and the server reads a connection in order (nats-server
// v2.15 server/consumer.go). So once the DoubleAck of the last message is
// answered, every Ack sent before it on this connection has been
// processed: the batch is confirmed as surely as with a DoubleAck each,
// unless the consumer's leader changed meanwhile (a replicated consumer):
// the old leader drops the acks it had queued but not processed
// (setLeader(false) drains ackMsgs), while the new leader may answer the
// DoubleAck. Such lost acks are not counted as ack failures; their
// messages are redelivered after AckWait and re-applied, within
// at-least-once. (Nak, Term and in-progress acks of the batch, sent
// earlier on the same connection, are covered too; nothing here depends
// on that.) There is no
// "ack everything up to" for AckExplicit consumers, and AckAll would also
// ack the messages a batch sends back for redelivery.
//
// When the confirmation fails (timeout, disconnect, closed connection)
// every message of the batch counts as unconfirmed, as a failed ack did
// before: some acks may be lost, those messages are redelivered after
// AckWait and re-applied, and the writes are idempotent ($max,
// $setOnInsert, deletes). While disconnected the client buffers the acks
// and sends them on reconnect; waiting for a reply would only wait out the
// timeout.
func (a *Consumer) ackApplied(ctx context.Context, stats *batchStats) {
	acks := stats.acks
	stats.acks = stats.acks[:0]
	if len(acks) == 0 {
		return
	}
	// Only now: the heartbeat extends an applied message until its ack is
	// sent, however long the rest of its pass took to settle.
	for _, it := range acks {
		it.resolve()
	}
	if !a.js.Conn().IsConnected() {
		for _, it := range acks {
			_ = it.msg.Ack()
		}
		stats.ackFailures += len(acks)
		stats.lastAckErr = errNATSDisconnected
		return
	}
	failed := 0
	last := len(acks) - 1
	for _, it := range acks[:last] {
		if err := it.msg.Ack(); err != nil {
			failed++
			stats.lastAckErr = err
		}
	}
	confirmCtx, cancel := context.WithTimeout(ctx, defaultAuthOperationTimeout)
	err := acks[last].msg.DoubleAck(confirmCtx)
	cancel()
	if err != nil {
		stats.ackFailures += len(acks)
		stats.lastAckErr = err
		return
	}
	stats.ackFailures += failed
}
