package events

import "time"

// Decoder decodes and validates auth events. The zero value is ready to use
// with the package defaults.
type Decoder struct {
	// MaxClockSkew bounds how far in the future an event time may be;
	// 0 means DefaultMaxClockSkew.
	MaxClockSkew time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Decode is Decoder{}.Decode.
func Decode(data []byte) (AuthEvent, error) { return Decoder{}.Decode(data) }

// Decode parses data strictly and validates it completely. An event
// without an id is rejected (missing_field); a consumer that knows the
// message the event came in uses DecodeWithFallbackID instead. It returns
// a *RejectError (matching ErrInvalidEvent) listing every problem of any
// input it does not accept; it never panics.
func (d Decoder) Decode(data []byte) (AuthEvent, error) {
	return d.DecodeWithFallbackID(data, "")
}

// DecodeWithFallbackID is Decode for an event delivered in a message:
// fallbackID becomes the event's id when the event has none (absent, null
// or empty), as App Services' own events have none. The consumer passes
// the message's Nats-Msg-Id, else an id derived from the message's stream
// position (StreamEventID), so that a redelivery keeps the id. A fallback
// id must pass the same rule as an id in the event; "" means none.
func (d Decoder) DecodeWithFallbackID(data []byte, fallbackID string) (AuthEvent, error) {
	var ps problems
	ev, bad, ok := parseEvent(data, &ps)
	if ok {
		fromFallback := false
		if ev.ID == "" && bad&fieldID == 0 && fallbackID != "" {
			ev.ID, fromFallback = fallbackID, true
		}
		d.validate(&ev, &ps, bad, fromFallback)
	}
	if err := ps.err(); err != nil {
		return AuthEvent{}, err
	}
	return ev, nil
}

// Validate checks an event built in code, with the same rules Decode
// applies to the decoded event. SchemaVersion 0 stands for "not given",
// which means 1.
func (d Decoder) Validate(ev AuthEvent) error {
	var ps problems
	d.validate(&ev, &ps, 0, false)
	return ps.err()
}
