package triggers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/customdata-worker/customdata-worker/events"
)

// Rule is a declarative trigger: on the listed operations (and providers)
// it writes fields whose values come from the event or are constants.
// There is no expression language and no way to name an operator: the
// operators are fixed ($set, $max, $setOnInsert) and values are plain.
type Rule struct {
	// Name identifies the rule in logs and metrics; required and unique.
	Name string `yaml:"name" json:"name"`
	// On lists the operations the rule runs on; required.
	On []events.Operation `yaml:"on" json:"on"`
	// Providers restricts the rule to events naming one of them; empty
	// means every provider.
	Providers []string `yaml:"providers" json:"providers"`
	// Upsert creates a missing document. SetOnInsert requires it.
	Upsert bool `yaml:"upsert" json:"upsert"`
	// Set, Max and SetOnInsert map top-level field names to value sources
	// for the MongoDB operators of the same names.
	Set         map[string]ValueSource `yaml:"set" json:"set"`
	Max         map[string]ValueSource `yaml:"max" json:"max"`
	SetOnInsert map[string]ValueSource `yaml:"setOnInsert" json:"setOnInsert"`
}

// Source names where a rule value comes from.
type Source string

// Value sources.
const (
	// SourceEventTime is the event time, as a UTC timestamp.
	SourceEventTime Source = "eventTime"
	// SourceProvider is the first provider of the event that passes the
	// rule's provider filter (the first provider when it has none).
	SourceProvider Source = "provider"
	// SourceUserID is the user id.
	SourceUserID Source = "userId"
	// SourceEventID is the event id.
	SourceEventID Source = "eventId"
	// SourceConstant is Value: a string, number, boolean or null.
	SourceConstant Source = "constant"
)

// Sources lists every value source.
var Sources = []Source{SourceEventTime, SourceProvider, SourceUserID, SourceEventID, SourceConstant}

// ValueSource says where one field's value comes from.
type ValueSource struct {
	// From is one of Sources.
	From Source `yaml:"from" json:"from"`
	// Value is the constant for From "constant"; it must be absent
	// otherwise. In Go, nil means null.
	Value any `yaml:"value" json:"value"`

	// Set by the decoders and reported by Validate, which can name the rule
	// and field: whether the "value" key was present (so that a constant
	// without a value and a non-constant with one are caught), and the
	// first structural problem met.
	valueGiven, decoded bool
	problem             string
}

// UnmarshalYAML decodes {from, value} strictly.
func (v *ValueSource) UnmarshalYAML(node *yaml.Node) error {
	*v = ValueSource{decoded: true}
	if node.Kind == yaml.AliasNode && node.Alias != nil {
		node = node.Alias
	}
	if node.Kind != yaml.MappingNode {
		v.problem = "a value source is a mapping {from: ..., value: ...}"
		return nil
	}
	seen := make(map[string]bool, 2)
	for i := 0; i+1 < len(node.Content); i += 2 {
		key, val := node.Content[i], node.Content[i+1]
		if seen[key.Value] {
			v.problem = fmt.Sprintf("key %q given twice", key.Value)
			return nil
		}
		seen[key.Value] = true
		switch key.Value {
		case "from":
			if err := val.Decode(&v.From); err != nil {
				v.problem = "from must be a string"
			}
		case "value":
			if err := val.Decode(&v.Value); err != nil {
				v.problem = "value cannot be decoded"
			}
			v.valueGiven = true
		default:
			v.problem = fmt.Sprintf("unknown key %q in a value source (want from, value)", key.Value)
		}
		if v.problem != "" {
			return nil
		}
	}
	return nil
}

// UnmarshalJSON decodes {"from", "value"} strictly.
func (v *ValueSource) UnmarshalJSON(data []byte) error {
	*v = ValueSource{decoded: true}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil || raw == nil {
		v.problem = `a value source is an object {"from": ..., "value": ...}`
		return nil
	}
	for _, key := range sortedKeys(raw) {
		msg := raw[key]
		switch key {
		case "from":
			if err := json.Unmarshal(msg, &v.From); err != nil {
				v.problem = "from must be a string"
			}
		case "value":
			dec := json.NewDecoder(bytes.NewReader(msg))
			dec.UseNumber()
			if err := dec.Decode(&v.Value); err != nil {
				v.problem = "value cannot be decoded"
			}
			v.valueGiven = true
		default:
			v.problem = fmt.Sprintf("unknown key %q in a value source (want from, value)", key)
		}
		if v.problem != "" {
			return nil
		}
	}
	return nil
}

// validate checks one rule; the caller prefixes the rule's index and name.
func (r Rule) validate(userIDField string) error {
	if !ruleNamePattern.MatchString(r.Name) {
		return fmt.Errorf("name is required and must match %s", ruleNamePattern)
	}
	if len(r.On) == 0 {
		return fmt.Errorf("on: list at least one of LOGIN, CREATE, DELETE")
	}
	for i, op := range r.On {
		if !op.Valid() {
			return fmt.Errorf("on[%d] %q: must be LOGIN, CREATE or DELETE", i, op)
		}
		if slices.Contains(r.On[:i], op) {
			return fmt.Errorf("on[%d] %q: listed twice", i, op)
		}
	}
	if err := validateProviders(r.Providers); err != nil {
		return fmt.Errorf("providers%w", err)
	}
	total := len(r.Set) + len(r.Max) + len(r.SetOnInsert)
	if total == 0 {
		return fmt.Errorf("writes nothing: give set, max or setOnInsert")
	}
	if total > MaxFieldsPerWrite {
		return fmt.Errorf("at most %d fields", MaxFieldsPerWrite)
	}
	if len(r.SetOnInsert) > 0 && !r.Upsert {
		return fmt.Errorf("setOnInsert only takes effect with upsert: true")
	}
	ops := []struct {
		name   string
		fields map[string]ValueSource
	}{{"set", r.Set}, {"max", r.Max}, {"setOnInsert", r.SetOnInsert}}
	for i, op := range ops {
		for _, field := range sortedKeys(op.fields) {
			where := op.name + "." + field
			if err := validateFieldName(field); err != nil {
				return fmt.Errorf("%s %q: %v", op.name, field, err)
			}
			if field == userIDField {
				return fmt.Errorf("%s: is the user-id field, which the worker owns", where)
			}
			for _, other := range ops[i+1:] {
				if _, dup := other.fields[field]; dup {
					return fmt.Errorf("%s: also under %s; MongoDB rejects a field under two operators", where, other.name)
				}
			}
			if err := op.fields[field].validate(); err != nil {
				return fmt.Errorf("%s: %v", where, err)
			}
		}
	}
	return nil
}

func (v ValueSource) validate() error {
	if v.problem != "" {
		return errors.New(v.problem)
	}
	switch v.From {
	case SourceConstant:
		if v.decoded && !v.valueGiven {
			return fmt.Errorf("from constant needs a value (write value: null for null)")
		}
		if _, err := normalizeConstant(v.Value); err != nil {
			return err
		}
		return nil
	case SourceEventTime, SourceProvider, SourceUserID, SourceEventID:
		if v.valueGiven || v.Value != nil {
			return fmt.Errorf("from %s takes no value (only from constant does)", v.From)
		}
		return nil
	case "":
		return fmt.Errorf("from is required (one of %v)", Sources)
	default:
		return fmt.Errorf("from %q is unknown (want one of %v)", v.From, Sources)
	}
}

// ruleHandler runs one validated, normalized rule.
type ruleHandler struct {
	rule Rule
}

func (h ruleHandler) filter() Filter {
	return On(h.rule.On...).WithProviders(h.rule.Providers...)
}

// Handle implements Handler.
func (h ruleHandler) Handle(ev events.AuthEvent) ([]Write, error) {
	w := Write{
		UserID:      ev.User.ID,
		Upsert:      h.rule.Upsert,
		Set:         h.resolve(h.rule.Set, ev),
		Max:         h.resolve(h.rule.Max, ev),
		SetOnInsert: h.resolve(h.rule.SetOnInsert, ev),
	}
	return []Write{w}, nil
}

func (h ruleHandler) resolve(fields map[string]ValueSource, ev events.AuthEvent) map[string]any {
	if len(fields) == 0 {
		return nil
	}
	out := make(map[string]any, len(fields))
	for name, src := range fields {
		switch src.From {
		case SourceEventTime:
			out[name] = ev.Time.UTC()
		case SourceProvider:
			out[name] = h.provider(ev)
		case SourceUserID:
			out[name] = ev.User.ID
		case SourceEventID:
			out[name] = ev.ID
		case SourceConstant:
			out[name] = src.Value
		}
	}
	return out
}

// provider is the first provider of ev that the rule's filter accepts.
func (h ruleHandler) provider(ev events.AuthEvent) string {
	for _, p := range ev.Providers {
		if len(h.rule.Providers) == 0 || slices.Contains(h.rule.Providers, p) {
			return p
		}
	}
	// Unreachable through Set.Decide, which filters first; an event without
	// providers is invalid.
	return ""
}
