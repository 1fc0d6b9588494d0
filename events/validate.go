package events

import (
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

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

const userTypeRule = `user.type, when given, must be "normal", "server" or "system"`

// ValidUserType reports whether t is one of the user types App Services
// documents: UserTypeNormal, UserTypeServer or UserTypeSystem.
func ValidUserType(t string) bool {
	return t == UserTypeNormal || t == UserTypeServer || t == UserTypeSystem
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
