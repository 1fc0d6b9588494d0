package events

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

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
	// SchemaVersion must be 1.
	SchemaVersion int `json:"schemaVersion"`
	// ID is unique per event; it becomes the Nats-Msg-Id, so a producer that
	// retries a publish with the same ID is de-duplicated by the server.
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

// User is the subject of an auth event, shaped like an App Services user.
type User struct {
	// ID is the user id that keys the custom-data document.
	ID string `json:"id"`
	// Type is informational ("normal", "server").
	Type string `json:"type,omitempty"`
	// Identities are the provider identities linked to the user.
	Identities []Identity `json:"identities,omitempty"`
	// Data is provider metadata (email, name…). It is never written to
	// MongoDB by the built-in triggers.
	Data map[string]any `json:"data,omitempty"`
}

// Identity is one provider identity of a user.
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

var (
	providerRE = regexp.MustCompile(ProviderPattern)
	eventIDRE  = regexp.MustCompile(EventIDPattern)
)

// ValidProvider reports whether name has the documented provider shape.
func ValidProvider(name string) bool { return providerRE.MatchString(name) }

// Reason is a machine-readable rejection reason. It travels in the
// dead-letter headers, so its values are part of the contract.
type Reason string

// Rejection reasons.
const (
	ReasonTooLarge           Reason = "too_large"
	ReasonMalformedJSON      Reason = "malformed_json"
	ReasonTooDeep            Reason = "too_deep"
	ReasonUnknownField       Reason = "unknown_field"
	ReasonForbiddenKey       Reason = "forbidden_key"
	ReasonUnsupportedVersion Reason = "unsupported_schema_version"
	ReasonMissingField       Reason = "missing_field"
	ReasonInvalidEventID     Reason = "invalid_event_id"
	ReasonUnknownOperation   Reason = "unknown_operation"
	ReasonInvalidProvider    Reason = "invalid_provider"
	ReasonInvalidUserID      Reason = "invalid_user_id"
	ReasonInvalidTime        Reason = "invalid_time"
	ReasonSubjectMismatch    Reason = "subject_mismatch"
)

// ErrInvalidEvent matches (errors.Is) every rejection of an auth event.
var ErrInvalidEvent = errors.New("invalid auth event")

// RejectError says why an event was rejected.
type RejectError struct {
	Reason Reason
	// Detail is a human explanation; it never contains field values that
	// could carry secrets or custom data, only names and limits.
	Detail string
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("invalid auth event: %s: %s", e.Reason, e.Detail)
}

// Is makes errors.Is(err, ErrInvalidEvent) true for every rejection.
func (e *RejectError) Is(target error) bool { return target == ErrInvalidEvent }

// ReasonOf returns the rejection reason carried by err, or "" if err is not
// a rejection.
func ReasonOf(err error) Reason {
	var re *RejectError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ""
}

func reject(r Reason, format string, args ...any) error {
	return &RejectError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

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

// Decode parses data strictly and validates it completely. It returns a
// *RejectError (matching ErrInvalidEvent) for any input it does not accept;
// it never panics.
func (d Decoder) Decode(data []byte) (AuthEvent, error) {
	var ev AuthEvent
	if len(data) > MaxEventBytes {
		return ev, reject(ReasonTooLarge, "event is %d bytes, limit %d", len(data), MaxEventBytes)
	}
	if !utf8.Valid(data) {
		return ev, reject(ReasonMalformedJSON, "event is not valid UTF-8")
	}
	// First pass: walk every key at every depth. Keys that MongoDB would read
	// as operators or paths must never reach an update, wherever they are.
	if err := checkKeys(data); err != nil {
		return ev, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		if strings.HasPrefix(err.Error(), "json: unknown field") {
			return AuthEvent{}, reject(ReasonUnknownField, "%s", strings.TrimPrefix(err.Error(), "json: "))
		}
		var te *time.ParseError
		if errors.As(err, &te) {
			return AuthEvent{}, reject(ReasonInvalidTime, "time is not RFC 3339")
		}
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return AuthEvent{}, reject(ReasonMalformedJSON, "field %q has the wrong type", ute.Field)
		}
		return AuthEvent{}, reject(ReasonMalformedJSON, "%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return AuthEvent{}, reject(ReasonMalformedJSON, "trailing data after the event")
	}
	if err := d.validate(&ev); err != nil {
		return AuthEvent{}, err
	}
	return ev, nil
}

// Validate checks an event built in code, with the same rules Decode applies.
func (d Decoder) Validate(ev AuthEvent) error { return d.validate(&ev) }

func (d Decoder) validate(ev *AuthEvent) error {
	if ev.SchemaVersion == 0 {
		return reject(ReasonMissingField, "schemaVersion is required")
	}
	if ev.SchemaVersion != SchemaVersion {
		return reject(ReasonUnsupportedVersion, "schemaVersion %d is not supported (want %d)", ev.SchemaVersion, SchemaVersion)
	}
	if ev.ID == "" {
		return reject(ReasonMissingField, "id is required")
	}
	if len(ev.ID) > MaxEventIDBytes || !eventIDRE.MatchString(ev.ID) {
		return reject(ReasonInvalidEventID, "id must match %s and be at most %d bytes", EventIDPattern, MaxEventIDBytes)
	}
	if ev.OperationType == "" {
		return reject(ReasonMissingField, "operationType is required")
	}
	if !ev.OperationType.Valid() {
		return reject(ReasonUnknownOperation, "operationType must be LOGIN, CREATE or DELETE")
	}
	if len(ev.Providers) == 0 {
		return reject(ReasonMissingField, "providers must name at least one provider")
	}
	if len(ev.Providers) > MaxProviders {
		return reject(ReasonInvalidProvider, "at most %d providers", MaxProviders)
	}
	for i, p := range ev.Providers {
		if !ValidProvider(p) {
			return reject(ReasonInvalidProvider, "providers[%d] must match %s", i, ProviderPattern)
		}
	}
	if err := ValidateUserID(ev.User.ID); err != nil {
		return err
	}
	// Absent and null both decode to the zero time.
	if ev.Time.IsZero() {
		return reject(ReasonMissingField, "time is required")
	}
	if y := ev.Time.Year(); y < 2000 || y > 9999 {
		return reject(ReasonInvalidTime, "time year %d is out of range", y)
	}
	now, skew := time.Now, DefaultMaxClockSkew
	if d.Now != nil {
		now = d.Now
	}
	if d.MaxClockSkew > 0 {
		skew = d.MaxClockSkew
	}
	if ev.Time.After(now().Add(skew)) {
		return reject(ReasonInvalidTime, "time is more than %s in the future", skew)
	}
	return nil
}

// ValidateUserID checks a user id against the documented limits: 1 to
// MaxUserIDBytes bytes of valid UTF-8, no control or invisible format
// characters, not blank. Dots, wildcards, spaces and non-ASCII are allowed.
func ValidateUserID(id string) error {
	if id == "" {
		return reject(ReasonMissingField, "user.id is required")
	}
	if len(id) > MaxUserIDBytes {
		return reject(ReasonInvalidUserID, "user.id is longer than %d bytes", MaxUserIDBytes)
	}
	if !utf8.ValidString(id) {
		return reject(ReasonInvalidUserID, "user.id is not valid UTF-8")
	}
	if strings.TrimSpace(id) == "" {
		return reject(ReasonInvalidUserID, "user.id is blank")
	}
	for _, r := range id {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			return reject(ReasonInvalidUserID, "user.id contains a control or format character")
		}
	}
	return nil
}

// keyShape lists the exact key names of one typed object of the event and,
// per key, the shape of the object (or of the array elements) it holds;
// nil means free-form (user.data) or scalar.
type keyShape map[string]keyShape

// eventShape is the shape of AuthEvent. encoding/json matches keys without
// regard to case and lets a repeated key overwrite the earlier one, so
// without this check {"id":"a","ID":"b"} or a repeated "user" would be read
// differently by the worker than by another parser (a gateway, an audit
// log) looking at the same bytes.
var eventShape = keyShape{
	"schemaVersion": nil,
	"id":            nil,
	"operationType": nil,
	"providers":     nil,
	"time":          nil,
	"user": keyShape{
		"id":         nil,
		"type":       nil,
		"data":       nil,
		"identities": keyShape{"id": nil, "provider_type": nil},
	},
}

// checkKeys walks the JSON token stream and rejects keys that MongoDB could
// interpret ($-prefixed, dotted, containing NUL), nesting beyond MaxDepth,
// a key repeated within one object, and keys of the typed parts that are
// not spelled exactly as in the schema.
func checkKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type frame struct {
		object, expectKey bool
		// shape: for an object, its exact keys (nil: free-form); for an
		// array, the shape of its object elements.
		shape keyShape
		// child: the shape of the value of the last key read.
		child keyShape
		keys  map[string]struct{}
	}
	var stack []frame
	first := true
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if first {
				return reject(ReasonMalformedJSON, "empty input")
			}
			return nil
		}
		if err != nil {
			return reject(ReasonMalformedJSON, "%v", err)
		}
		if first {
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return reject(ReasonMalformedJSON, "event must be a JSON object")
			}
			first = false
		}
		top := len(stack) - 1
		isKey := top >= 0 && stack[top].object && stack[top].expectKey
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				shape := eventShape
				if top >= 0 {
					if stack[top].object {
						stack[top].expectKey = true
						shape = stack[top].child
					} else {
						shape = stack[top].shape
					}
				}
				if len(stack) >= MaxDepth {
					return reject(ReasonTooDeep, "nesting deeper than %d", MaxDepth)
				}
				stack = append(stack, frame{object: t == '{', expectKey: t == '{', shape: shape})
			case '}', ']':
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					// Anything after the top-level object is reported by
					// the strict decoder.
					return nil
				}
			}
		case string:
			if isKey {
				f := &stack[top]
				if err := checkKey(t); err != nil {
					return err
				}
				if _, dup := f.keys[t]; dup {
					return reject(ReasonMalformedJSON, "an object repeats a key")
				}
				if f.keys == nil {
					f.keys = make(map[string]struct{})
				}
				f.keys[t] = struct{}{}
				f.child = nil
				if f.shape != nil {
					child, known := f.shape[t]
					if !known {
						return reject(ReasonUnknownField, "unknown field %q", t)
					}
					f.child = child
				}
				f.expectKey = false
				continue
			}
			if top >= 0 && stack[top].object {
				stack[top].expectKey = true
			}
		default:
			if top >= 0 && stack[top].object {
				stack[top].expectKey = true
			}
		}
	}
}

func checkKey(k string) error {
	switch {
	case strings.HasPrefix(k, "$"):
		return reject(ReasonForbiddenKey, "a key starts with '$'")
	case strings.Contains(k, "."):
		return reject(ReasonForbiddenKey, "a key contains '.'")
	case strings.ContainsRune(k, 0):
		return reject(ReasonForbiddenKey, "a key contains NUL")
	}
	for _, r := range k {
		if unicode.IsControl(r) {
			return reject(ReasonForbiddenKey, "a key contains a control character")
		}
	}
	return nil
}

// NewEventID returns a fresh random event id (32 hex digits).
func NewEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

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
