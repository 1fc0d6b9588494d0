package triggers

import (
	"maps"

	"github.com/customdata-worker/customdata-worker/events"
)

// NewSet validates cfg and returns a Set holding the enabled built-ins
// (registered as NameLastLogin, NameCreateOnSignup, NameDeleteOnUserDelete,
// in that order) followed by each rule (as RulePrefix + rule name).
// Callers may Register further Go handlers on the result before use.
func NewSet(cfg Config) (*Set, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.normalize()
	s := &Set{userIDField: cfg.UserIDField}
	register := func(name string, f Filter, h Handler) error {
		if err := s.Register(name, f, h); err != nil {
			return configErr("%v", err)
		}
		return nil
	}
	if cfg.LastLogin.IsEnabled() {
		h := lastLogin{field: cfg.LastLogin.Field, upsert: cfg.LastLogin.Upsert}
		f := On(events.OperationLogin).WithProviders(cfg.LastLogin.Providers...)
		if err := register(NameLastLogin, f, h); err != nil {
			return nil, err
		}
	}
	if cfg.CreateOnSignup.IsEnabled() {
		h := createOnSignup{createdAtField: cfg.CreateOnSignup.CreatedAtField, defaults: cfg.CreateOnSignup.Defaults}
		f := On(events.OperationCreate).WithProviders(cfg.CreateOnSignup.Providers...)
		if err := register(NameCreateOnSignup, f, h); err != nil {
			return nil, err
		}
	}
	if cfg.DeleteOnUserDelete.IsEnabled() {
		f := On(events.OperationDelete).WithProviders(cfg.DeleteOnUserDelete.Providers...)
		if err := register(NameDeleteOnUserDelete, f, deleteOnUserDelete{}); err != nil {
			return nil, err
		}
	}
	for _, r := range cfg.Rules {
		h := ruleHandler{rule: r}
		if err := register(RulePrefix+r.Name, h.filter(), h); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// lastLogin sets a field to the login time with $max: redelivered or
// out-of-order logins never move it backwards.
type lastLogin struct {
	field  string
	upsert bool
}

func (h lastLogin) Handle(ev events.AuthEvent) ([]Write, error) {
	return []Write{{
		UserID: ev.User.ID,
		Upsert: h.upsert,
		Max:    map[string]any{h.field: ev.Time.UTC()},
	}}, nil
}

// createOnSignup inserts the document with $setOnInsert only, so an
// existing document (created by another path, or a replayed CREATE after
// edits) is never overwritten.
type createOnSignup struct {
	createdAtField string
	defaults       map[string]any // normalized constants
}

func (h createOnSignup) Handle(ev events.AuthEvent) ([]Write, error) {
	soi := make(map[string]any, len(h.defaults)+1)
	maps.Copy(soi, h.defaults)
	soi[h.createdAtField] = ev.Time.UTC()
	return []Write{{UserID: ev.User.ID, Upsert: true, SetOnInsert: soi}}, nil
}

// deleteOnUserDelete deletes the user's document.
type deleteOnUserDelete struct{}

func (deleteOnUserDelete) Handle(ev events.AuthEvent) ([]Write, error) {
	return []Write{{UserID: ev.User.ID, Delete: true}}, nil
}
