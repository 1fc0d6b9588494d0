package triggers

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/customdata-worker/customdata-worker/events"
)

// MaxFieldNameBytes is the longest field name a Write may use.
const MaxFieldNameBytes = 64

// ValidateWrite checks field names and values of a Write; errors match ErrPermanent.
//
// It guarantees that the worker can turn w into one MongoDB operation that
// touches only the top-level fields it names: no operator injection ('$'),
// no path traversal ('.'), no _id, no conflicting paths, and only scalar
// values that encode to BSON unambiguously. It does not know the configured
// user-id field; the configuration that produced w is checked for that.
func ValidateWrite(w Write) error {
	if err := events.ValidateUserID(w.UserID); err != nil {
		return fmt.Errorf("%w: write: %v", ErrPermanent, err)
	}
	if w.Delete {
		if w.Upsert || len(w.Set) > 0 || len(w.Max) > 0 || len(w.SetOnInsert) > 0 {
			return fmt.Errorf("%w: write: a delete carries no upsert and no fields", ErrPermanent)
		}
		return nil
	}
	ops := []struct {
		name   string
		fields map[string]any
	}{{"set", w.Set}, {"max", w.Max}, {"setOnInsert", w.SetOnInsert}}
	for i, op := range ops {
		for field, value := range op.fields {
			if err := validateFieldName(field); err != nil {
				return fmt.Errorf("%w: write: %s field %q: %w", ErrPermanent, op.name, field, err)
			}
			if err := validateValue(value); err != nil {
				return fmt.Errorf("%w: write: %s field %q: %w", ErrPermanent, op.name, field, err)
			}
			// MongoDB rejects an update naming one path under two operators.
			for _, other := range ops[i+1:] {
				if _, dup := other.fields[field]; dup {
					return fmt.Errorf("%w: write: field %q appears under both %s and %s", ErrPermanent, field, op.name, other.name)
				}
			}
		}
	}
	return nil
}

// validateFieldName checks one top-level field name. The error does not
// repeat the name; callers add it.
func validateFieldName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("field name is empty")
	case len(name) > MaxFieldNameBytes:
		return fmt.Errorf("field name is longer than %d bytes", MaxFieldNameBytes)
	case !utf8.ValidString(name):
		return fmt.Errorf("field name is not valid UTF-8")
	case strings.HasPrefix(name, "$"):
		return fmt.Errorf("field name starts with '$' (an operator)")
	case strings.Contains(name, "."):
		return fmt.Errorf("field name contains '.' (a path)")
	case name == "_id":
		return fmt.Errorf("field name is _id, which is immutable")
	}
	for _, r := range name {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return fmt.Errorf("field name contains a control or format character")
		}
	}
	return nil
}

// validateValue accepts the scalar types a Write may carry. Non-finite
// floats are refused: NaN sorts below every number in MongoDB, which would
// make $max silently useless.
func validateValue(v any) error {
	switch x := v.(type) {
	case nil, bool, int, int32, int64, time.Time:
		return nil
	case string:
		if !utf8.ValidString(x) {
			return fmt.Errorf("string value is not valid UTF-8")
		}
		return nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("number is not finite")
		}
		return nil
	default:
		return fmt.Errorf("value of type %T is not a string, bool, int, int32, int64, float64, time.Time or nil", v)
	}
}
