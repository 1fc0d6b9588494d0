package triggers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"regexp"
	"slices"
	"sort"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/customdata-worker/customdata-worker/events"
)

// Defaults of Config.
const (
	DefaultUserIDField    = events.DefaultUserIDField
	DefaultLastLoginField = "lastLogin"
	DefaultCreatedAtField = "createdAt"
)

// Limits on a trigger configuration. They keep one config file from
// making every event expensive.
const (
	MaxRules          = 64
	MaxFieldsPerWrite = 64
	MaxConfigBytes    = 1 << 20
	// MaxConfigProviders bounds one provider list.
	MaxConfigProviders = 64
)

// Names under which NewSet registers the built-in triggers; rules are
// registered as RulePrefix + rule name.
const (
	NameLastLogin          = "lastLogin"
	NameCreateOnSignup     = "createOnSignup"
	NameDeleteOnUserDelete = "deleteOnUserDelete"
	RulePrefix             = "rule:"
)

// ruleNamePattern is the shape of a rule name; names appear in logs and
// metrics, so they are kept plain.
var ruleNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Config configures the built-in triggers and the declarative rules. It is
// read from YAML or JSON (see LoadConfig); the keys are the yaml tags.
//
// The zero Config is valid and means the defaults: every built-in enabled
// with default field names and no rules. A built-in with an Enabled
// pointer is on when the key is absent (nil) and off only with an
// explicit "enabled: false".
type Config struct {
	// UserIDField is the field that keys the custom-data documents. It must
	// match the worker's setting; no trigger may write it, because the
	// worker's filter owns it. Empty means DefaultUserIDField for
	// validation; it is left empty by DefaultConfig and ParseConfig when
	// not given, so the worker's wiring can fill in its own setting.
	UserIDField string `yaml:"userIdField" json:"userIdField"`
	// LastLogin records the time of each login.
	LastLogin LastLoginConfig `yaml:"lastLogin" json:"lastLogin"`
	// CreateOnSignup creates the document when a user is created.
	CreateOnSignup CreateOnSignupConfig `yaml:"createOnSignup" json:"createOnSignup"`
	// DeleteOnUserDelete deletes the document when the user is deleted.
	DeleteOnUserDelete DeleteOnUserDeleteConfig `yaml:"deleteOnUserDelete" json:"deleteOnUserDelete"`
	// Rules are declarative triggers, run after the built-ins in order.
	Rules []Rule `yaml:"rules" json:"rules"`
}

// LastLoginConfig configures the lastLogin built-in: on LOGIN it sets
// Field to the event time with $max, so a redelivered or late event never
// moves it backwards.
type LastLoginConfig struct {
	// Enabled: nil (absent) means true.
	Enabled *bool `yaml:"enabled" json:"enabled"`
	// Field is the field written. Default "lastLogin".
	Field string `yaml:"field" json:"field"`
	// Providers restricts the trigger to these providers; empty means all.
	Providers []string `yaml:"providers" json:"providers"`
	// Upsert creates a missing document on login. Default false: a LOGIN
	// of a user without a document changes nothing.
	Upsert bool `yaml:"upsert" json:"upsert"`
}

// CreateOnSignupConfig configures the createOnSignup built-in: on CREATE it
// upserts the document with $setOnInsert, so it never overwrites an
// existing document.
type CreateOnSignupConfig struct {
	// Enabled: nil (absent) means true.
	Enabled *bool `yaml:"enabled" json:"enabled"`
	// Providers restricts the trigger to these providers; empty means all.
	Providers []string `yaml:"providers" json:"providers"`
	// CreatedAtField receives the event time. Default "createdAt".
	CreatedAtField string `yaml:"createdAtField" json:"createdAtField"`
	// Defaults are constant fields of a new document: strings, numbers,
	// booleans or null.
	Defaults map[string]any `yaml:"defaults" json:"defaults"`
}

// DeleteMode says what deleteOnUserDelete does.
type DeleteMode string

// Delete modes.
const (
	DeleteModeDelete DeleteMode = "delete"
	DeleteModeOff    DeleteMode = "off"
)

// DeleteOnUserDeleteConfig configures the deleteOnUserDelete built-in: on
// DELETE it deletes the user's document.
type DeleteOnUserDeleteConfig struct {
	// Mode is "delete" (default when empty) or "off".
	Mode DeleteMode `yaml:"mode" json:"mode"`
	// Providers restricts the trigger to these providers; empty means all.
	Providers []string `yaml:"providers" json:"providers"`
}

// IsEnabled reports whether the trigger runs (absent Enabled means yes).
func (c LastLoginConfig) IsEnabled() bool { return c.Enabled == nil || *c.Enabled }

// IsEnabled reports whether the trigger runs (absent Enabled means yes).
func (c CreateOnSignupConfig) IsEnabled() bool { return c.Enabled == nil || *c.Enabled }

// IsEnabled reports whether the trigger runs (empty Mode means delete).
func (c DeleteOnUserDeleteConfig) IsEnabled() bool {
	return c.Mode == "" || c.Mode == DeleteModeDelete
}

// DefaultConfig returns the configuration used when none is given, with
// every default spelled out except UserIDField, which stays empty (see
// Config.UserIDField).
func DefaultConfig() Config {
	var c Config
	c.setDefaults()
	return c
}

func (c *Config) setDefaults() {
	if c.LastLogin.Enabled == nil {
		c.LastLogin.Enabled = boolPtr(true)
	}
	if c.LastLogin.Field == "" {
		c.LastLogin.Field = DefaultLastLoginField
	}
	if c.CreateOnSignup.Enabled == nil {
		c.CreateOnSignup.Enabled = boolPtr(true)
	}
	if c.CreateOnSignup.CreatedAtField == "" {
		c.CreateOnSignup.CreatedAtField = DefaultCreatedAtField
	}
	if c.DeleteOnUserDelete.Mode == "" {
		c.DeleteOnUserDelete.Mode = DeleteModeDelete
	}
}

func boolPtr(b bool) *bool { return &b }

// withDefaults returns a copy of c with defaults applied. Pointers and
// maps are shared with c; callers only read them.
func (c Config) withDefaults() Config {
	c.setDefaults()
	return c
}

// Validate checks the configuration (with defaults applied) and names the
// offending trigger, rule and field in its error, which matches
// ErrInvalidConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.UserIDField == "" {
		c.UserIDField = DefaultUserIDField
	}
	if err := validateFieldName(c.UserIDField); err != nil && c.UserIDField != "_id" {
		return configErr("userIdField %q: %v", c.UserIDField, err)
	}
	// A built-in's field may not be the user-id field either.
	field := func(where, name string) error {
		if err := validateFieldName(name); err != nil {
			return configErr("%s %q: %v", where, name, err)
		}
		if name == c.UserIDField {
			return configErr("%s %q: is the user-id field, which the worker owns", where, name)
		}
		return nil
	}
	if err := validateProviders(c.LastLogin.Providers); err != nil {
		return configErr("lastLogin.providers%v", err)
	}
	if err := field("lastLogin.field", c.LastLogin.Field); err != nil {
		return err
	}
	if err := validateProviders(c.CreateOnSignup.Providers); err != nil {
		return configErr("createOnSignup.providers%v", err)
	}
	if err := field("createOnSignup.createdAtField", c.CreateOnSignup.CreatedAtField); err != nil {
		return err
	}
	if len(c.CreateOnSignup.Defaults) >= MaxFieldsPerWrite {
		return configErr("createOnSignup.defaults: at most %d fields", MaxFieldsPerWrite-1)
	}
	for _, name := range sortedKeys(c.CreateOnSignup.Defaults) {
		where := "createOnSignup.defaults." + name
		if err := field("createOnSignup.defaults field", name); err != nil {
			return err
		}
		if name == c.CreateOnSignup.CreatedAtField {
			return configErr("%s: is also the createdAtField", where)
		}
		if _, err := normalizeConstant(c.CreateOnSignup.Defaults[name]); err != nil {
			return configErr("%s: %v", where, err)
		}
	}
	switch c.DeleteOnUserDelete.Mode {
	case DeleteModeDelete, DeleteModeOff:
	default:
		return configErr("deleteOnUserDelete.mode %q: must be %q or %q", c.DeleteOnUserDelete.Mode, DeleteModeDelete, DeleteModeOff)
	}
	if err := validateProviders(c.DeleteOnUserDelete.Providers); err != nil {
		return configErr("deleteOnUserDelete.providers%v", err)
	}
	if len(c.Rules) > MaxRules {
		return configErr("rules: at most %d rules", MaxRules)
	}
	seen := make(map[string]bool, len(c.Rules))
	for i, r := range c.Rules {
		if err := r.validate(c.UserIDField); err != nil {
			return configErr("rules[%d] (%q): %v", i, r.Name, err)
		}
		if seen[r.Name] {
			return configErr("rules[%d] (%q): the name is used by an earlier rule", i, r.Name)
		}
		seen[r.Name] = true
	}
	return nil
}

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// validateProviders returns an error starting with the offending index,
// for the caller to prefix with where the list is.
func validateProviders(providers []string) error {
	if len(providers) > MaxConfigProviders {
		return fmt.Errorf(": at most %d providers", MaxConfigProviders)
	}
	for i, p := range providers {
		if !events.ValidProvider(p) {
			return fmt.Errorf("[%d] %q: must match %s", i, p, events.ProviderPattern)
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := slices.Collect(maps.Keys(m))
	sort.Strings(keys)
	return keys
}

// normalizeConstant turns a configured constant into a value a Write may
// carry: nil, string, bool, int64 or float64. Anything structured (maps,
// lists) or typed (timestamps) is refused: constants are plain scalars so
// a config file can never smuggle an operator or a subdocument in.
func normalizeConstant(v any) (any, error) {
	switch x := v.(type) {
	case nil, bool:
		return x, nil
	case string:
		if err := validateValue(x); err != nil {
			return nil, err
		}
		return x, nil
	case int:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	case uint:
		return uintConstant(uint64(x))
	case uint8:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case uint64:
		return uintConstant(x)
	case float32:
		return floatConstant(float64(x))
	case float64:
		return floatConstant(x)
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n, nil
		}
		f, err := x.Float64()
		if err != nil {
			return nil, fmt.Errorf("number %s is out of range", x)
		}
		return floatConstant(f)
	case time.Time:
		return nil, fmt.Errorf("a timestamp is not a constant; quote it to store a string, or use from: eventTime")
	default:
		return nil, fmt.Errorf("a constant must be a string, number, boolean or null, not %s", describeType(v))
	}
}

func uintConstant(u uint64) (any, error) {
	if u > math.MaxInt64 {
		return nil, fmt.Errorf("number %d is out of range", u)
	}
	return int64(u), nil
}

func floatConstant(f float64) (any, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("number is not finite")
	}
	return f, nil
}

func describeType(v any) string {
	switch v.(type) {
	case map[string]any, map[any]any:
		return "an object"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("%T", v)
}

// LoadConfig reads a configuration file (YAML or JSON), applies defaults
// and validates it. Unknown keys are errors.
func LoadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("trigger config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigBytes+1))
	if err != nil {
		return Config{}, fmt.Errorf("trigger config %s: %w", path, err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("trigger config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig parses a configuration in YAML or JSON (a document starting
// with '{' is read as JSON), applies defaults and validates it. Unknown
// keys, duplicate YAML keys, several YAML documents and trailing data are
// errors. Empty input is the default configuration. Constants in the
// result are normalized to string, bool, int64, float64 or nil. JSON is
// read with encoding/json, which matches keys regardless of case and keeps
// the last of repeated keys; YAML is the stricter format.
func ParseConfig(data []byte) (Config, error) {
	if len(data) > MaxConfigBytes {
		return Config{}, configErr("config is larger than %d bytes", MaxConfigBytes)
	}
	var cfg Config
	var err error
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		err = decodeJSONConfig(data, &cfg)
	} else {
		err = decodeYAMLConfig(data, &cfg)
	}
	if err != nil {
		return Config{}, err
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	cfg.normalize()
	return cfg, nil
}

func decodeJSONConfig(data []byte, cfg *Config) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(cfg); err != nil {
		return configErr("JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return configErr("JSON: trailing data after the configuration")
	}
	return nil
}

func decodeYAMLConfig(data []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		if err == io.EOF {
			return nil // empty document: defaults
		}
		return configErr("YAML: %v", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		return configErr("YAML: only one document is allowed")
	}
	return nil
}

// normalize rewrites constants to the types a Write carries. Call only
// after Validate succeeded.
func (c *Config) normalize() {
	if c.CreateOnSignup.Defaults != nil {
		defaults := make(map[string]any, len(c.CreateOnSignup.Defaults))
		for k, v := range c.CreateOnSignup.Defaults {
			defaults[k], _ = normalizeConstant(v)
		}
		c.CreateOnSignup.Defaults = defaults
	}
	rules := slices.Clone(c.Rules)
	for i := range rules {
		rules[i].Set = normalizeSources(rules[i].Set)
		rules[i].Max = normalizeSources(rules[i].Max)
		rules[i].SetOnInsert = normalizeSources(rules[i].SetOnInsert)
	}
	c.Rules = rules
}

func normalizeSources(m map[string]ValueSource) map[string]ValueSource {
	if m == nil {
		return nil
	}
	out := make(map[string]ValueSource, len(m))
	for k, vs := range m {
		vs.Value, _ = normalizeConstant(vs.Value)
		out[k] = vs
	}
	return out
}
