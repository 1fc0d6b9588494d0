package events

import "time"

// SchemaVersion is the auth-event schema this package writes and accepts.
const SchemaVersion = 1

// Operation is the kind of authentication event.
type Operation string

// The operations App Services authentication triggers fire on.
const (
	OperationLogin  Operation = "LOGIN"
	OperationCreate Operation = "CREATE"
	OperationDelete Operation = "DELETE"
)

// Operations returns every known operation, in a stable order. It is a
// function so that no caller can change the list for everyone.
func Operations() []Operation {
	return []Operation{OperationLogin, OperationCreate, OperationDelete}
}

// Valid reports whether o is a known operation.
func (o Operation) Valid() bool {
	switch o {
	case OperationLogin, OperationCreate, OperationDelete:
		return true
	}
	return false
}

// AuthEvent is one authentication event. Its JSON form is the wire format.
type AuthEvent struct {
	// SchemaVersion must be 1. On the wire it may be left out (App
	// Services' own events have none): a decoded event always has 1.
	SchemaVersion int `json:"schemaVersion"`
	// ID is unique per event; it becomes the Nats-Msg-Id, so a producer that
	// retries a publish with the same ID is de-duplicated by the server. On
	// the wire it may be left out: the decoder then takes the fallback id
	// the consumer supplies (see Decoder.DecodeWithFallbackID).
	ID string `json:"id"`
	// OperationType is LOGIN, CREATE or DELETE.
	OperationType Operation `json:"operationType"`
	// Providers names the authentication providers involved, e.g.
	// "local-userpass" or "oauth2-google". At least one.
	Providers []string `json:"providers"`
	// User is the user the event is about.
	User User `json:"user"`
	// Time is when the event happened, RFC 3339.
	Time time.Time `json:"time"`
}

// User is the subject of an auth event, shaped like an App Services user
// object: id, type, data, custom_data and identities. custom_data (the
// custom-user-data document App Services attaches) and each identity's
// data are accepted on the wire, checked like the rest, and dropped: they
// are never decoded into the event, so nothing can write them anywhere.
type User struct {
	// ID is the user id that keys the custom-data document.
	ID string `json:"id"`
	// Type is informational: "normal", "server" or "system", as App
	// Services documents it (ValidUserType), or empty when not given.
	Type string `json:"type,omitempty"`
	// Identities are the provider identities linked to the user.
	Identities []Identity `json:"identities,omitempty"`
	// Data is provider metadata (email, name…). It is never written to
	// MongoDB by the built-in triggers.
	Data map[string]any `json:"data,omitempty"`
}

// Identity is one provider identity of a user. Its provider metadata
// ("data" on the wire) is accepted and dropped.
type Identity struct {
	ID           string `json:"id"`
	ProviderType string `json:"provider_type"`
}

// Limits on auth events. They bound what one message can make the worker do.
const (
	// MaxEventBytes is the largest encoded event accepted.
	MaxEventBytes = 64 << 10
	// MaxUserIDBytes is the longest user id accepted, in bytes of UTF-8.
	MaxUserIDBytes = 256
	// MaxEventIDBytes is the longest event id accepted.
	MaxEventIDBytes = 128
	// MaxProviders is the most providers one event may name.
	MaxProviders = 16
	// MaxDepth is the deepest JSON nesting accepted anywhere in an event.
	MaxDepth = 16
	// DefaultMaxClockSkew is how far in the future an event time may lie.
	// A LOGIN sets lastLogin with $max, so a far-future time would pin the
	// field forever; such events are rejected instead.
	DefaultMaxClockSkew = 5 * time.Minute
)

// Documented shapes of provider names (lowercase letters, digits and
// dashes, starting with a letter or digit) and of event ids.
const (
	ProviderPattern = `^[a-z0-9][a-z0-9-]{0,63}$`
	EventIDPattern  = `^[A-Za-z0-9][A-Za-z0-9._:-]*$`
)

// ValidProvider reports whether name has the documented provider shape,
// ProviderPattern. (Matched by hand: a regexp costs more than the rest of
// a decode; TestPatternsMatchTheirRegexps holds the two together.)
func ValidProvider(name string) bool {
	if len(name) == 0 || len(name) > 64 || name[0] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// User types App Services documents.
const (
	UserTypeNormal = "normal"
	UserTypeServer = "server"
	UserTypeSystem = "system"
)

// NewAuthEvent builds a valid-looking event for op about userID, with a
// fresh id and the current time. Callers add identities or data as needed.
func NewAuthEvent(op Operation, userID string, providers ...string) AuthEvent {
	return AuthEvent{
		SchemaVersion: SchemaVersion,
		ID:            NewEventID(),
		OperationType: op,
		Providers:     providers,
		User:          User{ID: userID},
		Time:          time.Now().UTC(),
	}
}
