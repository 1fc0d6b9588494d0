package triggers

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestValidateWrite(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		w       Write
		wantErr string // substring; "" means valid
	}{
		{"empty update is a valid no-op", Write{UserID: "u1"}, ""},
		{"all operators and value types", Write{UserID: "u1", Upsert: true,
			Set:         map[string]any{"s": "x", "b": true, "i": 1, "n": nil},
			Max:         map[string]any{"t": now, "i32": int32(2), "i64": int64(3)},
			SetOnInsert: map[string]any{"f": 1.5, "created": now}}, ""},
		{"delete", Write{UserID: "u1", Delete: true}, ""},
		{"user id with dots and non-ASCII", Write{UserID: "a.b*>é", Set: map[string]any{"x": 1}}, ""},
		{"field name of 64 bytes", Write{UserID: "u1", Set: map[string]any{strings.Repeat("a", 64): 1}}, ""},
		{"non-ASCII field name", Write{UserID: "u1", Set: map[string]any{"prénom": "x"}}, ""},

		{"missing user id", Write{Set: map[string]any{"x": 1}}, "user.id is required"},
		{"control char in user id", Write{UserID: "a\nb", Set: map[string]any{"x": 1}}, "control"},
		{"delete with set", Write{UserID: "u1", Delete: true, Set: map[string]any{"x": 1}}, "delete carries no"},
		{"delete with max", Write{UserID: "u1", Delete: true, Max: map[string]any{"x": 1}}, "delete carries no"},
		{"delete with setOnInsert", Write{UserID: "u1", Delete: true, SetOnInsert: map[string]any{"x": 1}}, "delete carries no"},
		{"delete with upsert", Write{UserID: "u1", Delete: true, Upsert: true}, "delete carries no"},
		{"empty field name", Write{UserID: "u1", Set: map[string]any{"": 1}}, "empty"},
		{"field name of 65 bytes", Write{UserID: "u1", Set: map[string]any{strings.Repeat("a", 65): 1}}, "longer than 64"},
		{"operator field name", Write{UserID: "u1", Set: map[string]any{"$where": 1}}, "'$'"},
		{"operator field name under max", Write{UserID: "u1", Max: map[string]any{"$inc": 1}}, "'$'"},
		{"dotted field name", Write{UserID: "u1", SetOnInsert: map[string]any{"a.b": 1}}, "'.'"},
		{"_id", Write{UserID: "u1", Set: map[string]any{"_id": 1}}, "_id"},
		{"NUL in field name", Write{UserID: "u1", Set: map[string]any{"a\x00b": 1}}, "control"},
		{"newline in field name", Write{UserID: "u1", Set: map[string]any{"a\nb": 1}}, "control"},
		{"zero-width char in field name", Write{UserID: "u1", Set: map[string]any{"a\u200bb": 1}}, "format"},
		{"non-UTF-8 field name", Write{UserID: "u1", Set: map[string]any{"a\xffb": 1}}, "UTF-8"},
		{"set and max on one field", Write{UserID: "u1", Set: map[string]any{"f": 1}, Max: map[string]any{"f": 2}}, "both set and max"},
		{"set and setOnInsert on one field", Write{UserID: "u1", Upsert: true, Set: map[string]any{"f": 1}, SetOnInsert: map[string]any{"f": 2}}, "both set and setOnInsert"},
		{"max and setOnInsert on one field", Write{UserID: "u1", Upsert: true, Max: map[string]any{"f": 1}, SetOnInsert: map[string]any{"f": 2}}, "both max and setOnInsert"},
		{"object value", Write{UserID: "u1", Set: map[string]any{"f": map[string]any{"$gt": 1}}}, "map[string]interface"},
		{"list value", Write{UserID: "u1", Set: map[string]any{"f": []any{1}}}, "[]interface"},
		{"float32 value", Write{UserID: "u1", Set: map[string]any{"f": float32(1)}}, "float32"},
		{"uint value", Write{UserID: "u1", Set: map[string]any{"f": uint(1)}}, "uint"},
		{"pointer value", Write{UserID: "u1", Set: map[string]any{"f": new(string)}}, "*string"},
		{"NaN", Write{UserID: "u1", Max: map[string]any{"f": math.NaN()}}, "not finite"},
		{"infinity", Write{UserID: "u1", Max: map[string]any{"f": math.Inf(1)}}, "not finite"},
		{"non-UTF-8 string", Write{UserID: "u1", Set: map[string]any{"f": "a\xff"}}, "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateWrite(tt.w)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateWrite: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateWrite accepted %+v", tt.w)
			}
			if !errors.Is(err, ErrPermanent) {
				t.Errorf("error %v does not match ErrPermanent", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}
