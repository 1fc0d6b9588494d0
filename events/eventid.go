package events

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
)

// StreamEventID derives an event id from the position of a message in its
// stream, "<stream>:<sequence>", for events that carry no id and came
// without a Nats-Msg-Id: a redelivery of the same message gets the same
// id. Characters of the stream name that the event-id rule does not allow
// become '_' (JetStream allows more in stream names), and an over-long
// name is cut, so the result always passes the rule.
func StreamEventID(stream string, seq uint64) string {
	num := strconv.FormatUint(seq, 10)
	room := MaxEventIDBytes - len(num) - 1
	b := make([]byte, 0, min(len(stream), room)+1+len(num))
	for i := 0; i < len(stream) && len(b) < room; i++ {
		c := stream[i]
		switch {
		case isAlnum(c):
		case len(b) > 0 && (c == '.' || c == '_' || c == ':' || c == '-'):
		case len(b) == 0:
			c = 's' // the rule wants a letter or digit first
		default:
			c = '_'
		}
		b = append(b, c)
	}
	if len(b) == 0 {
		b = append(b, 's')
	}
	b = append(b, ':')
	b = append(b, num...)
	return string(b)
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// ValidEventID reports whether id has the documented event-id shape,
// EventIDPattern, and at most MaxEventIDBytes bytes.
func ValidEventID(id string) bool {
	if len(id) == 0 || len(id) > MaxEventIDBytes || !isAlnum(id[0]) {
		return false
	}
	for i := 1; i < len(id); i++ {
		if c := id[i]; !(isAlnum(c) || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// NewEventID returns a fresh random event id (32 hex digits).
func NewEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}
