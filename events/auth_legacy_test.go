package events

// The strict decoder as it was before App Services' own event shape was
// accepted and every problem was listed (encoding/json plus a token pass).
// It is kept only while the new decoder is tuned, for the differential
// test in auth_diff_test.go; it goes once the new decoder has settled.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Decode parses data strictly and validates it completely. It returns a
// *RejectError (matching ErrInvalidEvent) for any input it does not accept;
// it never panics.
func legacyDecode(d Decoder, data []byte) (AuthEvent, error) {
	var ev AuthEvent
	if len(data) > MaxEventBytes {
		return ev, reject(ReasonTooLarge, "event is %d bytes, limit %d", len(data), MaxEventBytes)
	}
	if !utf8.Valid(data) {
		return ev, reject(ReasonMalformedJSON, "event is not valid UTF-8")
	}
	// First pass: walk every key at every depth. Keys that MongoDB would read
	// as operators or paths must never reach an update, wherever they are.
	if err := legacyCheckKeys(data); err != nil {
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
	if err := legacyValidate(d, &ev); err != nil {
		return AuthEvent{}, err
	}
	return ev, nil
}

func legacyValidate(d Decoder, ev *AuthEvent) error {
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
	if err := legacyValidateUserID(ev.User.ID); err != nil {
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

// legacyKeyShape lists the exact key names of one typed object of the event and,
// per key, the shape of the object (or of the array elements) it holds;
// nil means free-form (user.data) or scalar.
type legacyKeyShape map[string]legacyKeyShape

// legacyEventShape is the shape of AuthEvent. encoding/json matches keys without
// regard to case and lets a repeated key overwrite the earlier one, so
// without this check {"id":"a","ID":"b"} or a repeated "user" would be read
// differently by the worker than by another parser (a gateway, an audit
// log) looking at the same bytes.
var legacyEventShape = legacyKeyShape{
	"schemaVersion": nil,
	"id":            nil,
	"operationType": nil,
	"providers":     nil,
	"time":          nil,
	"user": legacyKeyShape{
		"id":         nil,
		"type":       nil,
		"data":       nil,
		"identities": legacyKeyShape{"id": nil, "provider_type": nil},
	},
}

// checkKeys walks the JSON token stream and rejects keys that MongoDB could
// interpret ($-prefixed, dotted, containing NUL), nesting beyond MaxDepth,
// a key repeated within one object, and keys of the typed parts that are
// not spelled exactly as in the schema.
func legacyCheckKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type frame struct {
		object, expectKey bool
		// shape: for an object, its exact keys (nil: free-form); for an
		// array, the shape of its object elements.
		shape legacyKeyShape
		// child: the shape of the value of the last key read.
		child legacyKeyShape
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
				shape := legacyEventShape
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
				if err := legacyCheckKey(t); err != nil {
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

func legacyCheckKey(k string) error {
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

// ValidateUserID checks a user id against the documented limits: 1 to
// MaxUserIDBytes bytes of valid UTF-8, no control or invisible format
// characters, not blank. Dots, wildcards, spaces and non-ASCII are allowed.
func legacyValidateUserID(id string) error {
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
