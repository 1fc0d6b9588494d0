package events

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
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

// Reason is a machine-readable rejection reason. It travels in the
// dead-letter headers, so its values are part of the contract.
type Reason string

// Rejection reasons, most important first: when an event has several
// problems, the first of these among them is its primary reason.
const (
	ReasonTooLarge           Reason = "too_large"
	ReasonMalformedJSON      Reason = "malformed_json"
	ReasonTooDeep            Reason = "too_deep"
	ReasonForbiddenKey       Reason = "forbidden_key"
	ReasonUnknownField       Reason = "unknown_field"
	ReasonUnsupportedVersion Reason = "unsupported_schema_version"
	ReasonMissingField       Reason = "missing_field"
	ReasonInvalidEventID     Reason = "invalid_event_id"
	ReasonUnknownOperation   Reason = "unknown_operation"
	ReasonInvalidProvider    Reason = "invalid_provider"
	ReasonInvalidUserID      Reason = "invalid_user_id"
	ReasonInvalidUserType    Reason = "invalid_user_type"
	ReasonInvalidTime        Reason = "invalid_time"
	ReasonSubjectMismatch    Reason = "subject_mismatch"
)

// rank orders reasons by importance (lower is more important); it picks
// the primary reason of a multi-problem rejection.
func (r Reason) rank() int {
	switch r {
	case ReasonTooLarge:
		return 0
	case ReasonMalformedJSON:
		return 1
	case ReasonTooDeep:
		return 2
	case ReasonForbiddenKey:
		return 3
	case ReasonUnknownField:
		return 4
	case ReasonUnsupportedVersion:
		return 5
	case ReasonMissingField:
		return 6
	case ReasonInvalidEventID:
		return 7
	case ReasonUnknownOperation:
		return 8
	case ReasonInvalidProvider:
		return 9
	case ReasonInvalidUserID:
		return 10
	case ReasonInvalidUserType:
		return 11
	case ReasonInvalidTime:
		return 12
	}
	return 13
}

// ErrInvalidEvent matches (errors.Is) every rejection of an auth event.
var ErrInvalidEvent = errors.New("invalid auth event")

// Problem is one thing wrong with an event.
type Problem struct {
	Reason Reason
	// Detail is a human explanation; it never contains field values that
	// could carry secrets or custom data, only names, positions and limits.
	Detail string
}

// MaxProblems is the most problems one rejection lists; the rest are
// counted (RejectError.Omitted).
const MaxProblems = 16

// RejectError says why an event was rejected. It lists every problem found
// in the event, so that a producer can fix them in one round; Reason and
// Detail are those of the most important one (the primary reason, used
// for the Dlq-Reason header and metrics).
type RejectError struct {
	Reason Reason
	Detail string
	// Problems are all the problems found, the primary one first, then the
	// others in the order they appear in the event. A syntax error or a
	// repeated key ends the reading: what lies after it is not checked. Nil for a RejectError
	// built by hand, which stands for its one problem.
	Problems []Problem
	// Omitted counts problems beyond MaxProblems that are not listed.
	Omitted int
}

// Error lists every problem: "invalid auth event: reason: detail; reason:
// detail".
func (e *RejectError) Error() string {
	if len(e.Problems) <= 1 && e.Omitted == 0 {
		return "invalid auth event: " + string(e.Reason) + ": " + e.Detail
	}
	var b strings.Builder
	b.WriteString("invalid auth event: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(string(p.Reason))
		b.WriteString(": ")
		b.WriteString(p.Detail)
	}
	if e.Omitted > 0 {
		b.WriteString("; and ")
		b.WriteString(strconv.Itoa(e.Omitted))
		b.WriteString(" more")
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalidEvent) true for every rejection.
func (e *RejectError) Is(target error) bool { return target == ErrInvalidEvent }

// ReasonOf returns the (primary) rejection reason carried by err, or "" if
// err is not a rejection.
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

// problems collects the problems of one event.
type problems struct {
	list    []Problem
	omitted int
}

func (ps *problems) add(r Reason, format string, args ...any) {
	if len(ps.list) >= MaxProblems {
		ps.omitted++
		return
	}
	ps.list = append(ps.list, Problem{Reason: r, Detail: fmt.Sprintf(format, args...)})
}

func (ps *problems) has(r Reason) bool {
	for _, p := range ps.list {
		if p.Reason == r {
			return true
		}
	}
	return false
}

// err returns the rejection for the problems collected, or nil.
func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	list := make([]Problem, 0, len(ps.list))
	primary := 0
	for i, p := range ps.list {
		if p.Reason.rank() < ps.list[primary].Reason.rank() {
			primary = i
		}
	}
	list = append(list, ps.list[primary])
	list = append(list, ps.list[:primary]...)
	list = append(list, ps.list[primary+1:]...)
	return &RejectError{Reason: list[0].Reason, Detail: list[0].Detail, Problems: list, Omitted: ps.omitted}
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

// fields names the typed fields of an event, to skip those that already
// had a problem while parsing (a wrong type): they are zero in the event
// and must not be reported again as missing.
type fields uint8

const (
	fieldSchemaVersion fields = 1 << iota
	fieldID
	fieldOperation
	fieldProviders
	fieldUserID
	fieldTime
)

// validate checks the decoded (or built) event and adds its problems to
// ps, except for the fields in skip. A zero SchemaVersion becomes 1.
func (d Decoder) validate(ev *AuthEvent, ps *problems, skip fields, idFromFallback bool) {
	switch {
	case skip&fieldSchemaVersion != 0:
	case ev.SchemaVersion == 0:
		ev.SchemaVersion = SchemaVersion
	case ev.SchemaVersion != SchemaVersion:
		ps.add(ReasonUnsupportedVersion, "schemaVersion %d is not supported (want %d)", ev.SchemaVersion, SchemaVersion)
	}
	switch {
	case skip&fieldID != 0:
	case ev.ID == "":
		ps.add(ReasonMissingField, "id is required (or a Nats-Msg-Id on the message)")
	case !ValidEventID(ev.ID) && idFromFallback:
		ps.add(ReasonInvalidEventID, "the event has no id and the one taken from its message does not match %s or is over %d bytes", EventIDPattern, MaxEventIDBytes)
	case !ValidEventID(ev.ID):
		ps.add(ReasonInvalidEventID, "id must match %s and be at most %d bytes", EventIDPattern, MaxEventIDBytes)
	}
	switch {
	case skip&fieldOperation != 0:
	case ev.OperationType == "":
		ps.add(ReasonMissingField, "operationType is required")
	case !ev.OperationType.Valid():
		ps.add(ReasonUnknownOperation, "operationType must be LOGIN, CREATE or DELETE")
	}
	switch {
	case skip&fieldProviders != 0:
	case len(ev.Providers) == 0:
		ps.add(ReasonMissingField, "providers must name at least one provider")
	case len(ev.Providers) > MaxProviders:
		ps.add(ReasonInvalidProvider, "at most %d providers", MaxProviders)
	default:
		for i, p := range ev.Providers {
			if !ValidProvider(p) {
				ps.add(ReasonInvalidProvider, "providers[%d] must match %s", i, ProviderPattern)
			}
		}
	}
	if r, detail := checkUserID(ev.User.ID); r != "" && skip&fieldUserID == 0 {
		ps.add(r, "%s", detail)
	}
	if ev.User.Type != "" && !ValidUserType(ev.User.Type) {
		ps.add(ReasonInvalidUserType, "%s", userTypeRule)
	}
	if skip&fieldTime == 0 {
		d.checkTime(ev.Time, ps)
	}
}

func (d Decoder) checkTime(t time.Time, ps *problems) {
	// Absent and null both decode to the zero time.
	if t.IsZero() {
		ps.add(ReasonMissingField, "time is required")
		return
	}
	if y := t.Year(); y < 2000 || y > 9999 {
		ps.add(ReasonInvalidTime, "time year %d is out of range", y)
		return
	}
	now, skew := time.Now, DefaultMaxClockSkew
	if d.Now != nil {
		now = d.Now
	}
	if d.MaxClockSkew > 0 {
		skew = d.MaxClockSkew
	}
	if t.After(now().Add(skew)) {
		ps.add(ReasonInvalidTime, "time is more than %s in the future", skew)
	}
}

// User types App Services documents.
const (
	UserTypeNormal = "normal"
	UserTypeServer = "server"
	UserTypeSystem = "system"
)

const userTypeRule = `user.type, when given, must be "normal", "server" or "system"`

// ValidUserType reports whether t is one of the user types App Services
// documents: UserTypeNormal, UserTypeServer or UserTypeSystem.
func ValidUserType(t string) bool {
	return t == UserTypeNormal || t == UserTypeServer || t == UserTypeSystem
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

// ValidateUserID checks a user id against the documented limits: 1 to
// MaxUserIDBytes bytes of valid UTF-8, no control or invisible format
// characters, not blank. Dots, wildcards, spaces and non-ASCII are allowed.
func ValidateUserID(id string) error {
	if r, detail := checkUserID(id); r != "" {
		return &RejectError{Reason: r, Detail: detail}
	}
	return nil
}

func checkUserID(id string) (Reason, string) {
	if id == "" {
		return ReasonMissingField, "user.id is required"
	}
	if len(id) > MaxUserIDBytes {
		return ReasonInvalidUserID, "user.id is longer than " + strconv.Itoa(MaxUserIDBytes) + " bytes"
	}
	if printableASCII(id) {
		// The common case, without the Unicode tables: only spaces can
		// make it blank.
		if strings.Trim(id, " ") == "" {
			return ReasonInvalidUserID, "user.id is blank"
		}
		return "", ""
	}
	if !utf8.ValidString(id) {
		return ReasonInvalidUserID, "user.id is not valid UTF-8"
	}
	if strings.TrimSpace(id) == "" {
		return ReasonInvalidUserID, "user.id is blank"
	}
	for _, r := range id {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			return ReasonInvalidUserID, "user.id contains a control or format character"
		}
	}
	return "", ""
}

// printableASCII reports whether s holds only ASCII from ' ' to '~'.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' {
			return false
		}
	}
	return true
}

// keyProblem says what is wrong with an object key that MongoDB could
// interpret ($-prefixed, dotted, containing NUL or control characters), or
// "" if nothing is.
func keyProblem(k []byte) string {
	if len(k) > 0 && k[0] == '$' {
		return "a key starts with '$'"
	}
	for _, c := range k {
		switch {
		case c == '.':
			return "a key contains '.'"
		case c == 0:
			return "a key contains NUL"
		case c < 0x20 || c == 0x7f:
			return "a key contains a control character"
		case c == 0xc2:
			// C1 controls U+0080–U+009F are C2 80–C2 9F in UTF-8.
			for _, r := range string(k) {
				if unicode.IsControl(r) {
					return "a key contains a control character"
				}
			}
		}
	}
	return ""
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
