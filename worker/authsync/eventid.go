package authsync

import (
	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
)

// fallbackEventID is the id an event without one gets (App Services' own
// events carry none): the message's Nats-Msg-Id, else one derived from the
// message's stream position, which a redelivery keeps.
func fallbackEventID(msg jetstream.Msg, meta *jetstream.MsgMetadata) string {
	if id := msg.Headers().Get(jetstream.MsgIDHeader); id != "" {
		return id
	}
	if meta == nil {
		return ""
	}
	return events.StreamEventID(meta.Stream, meta.Sequence.Stream)
}
