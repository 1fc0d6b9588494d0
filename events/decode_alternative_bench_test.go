package events

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
)

// BenchmarkDecodeAlternative is the decoder auth_decode.go would be
// without its hand-written walk: json.Unmarshal (encoding/json/v2 via
// go-json-experiment) with strict options into wire types, then a small
// walk over the untyped values for $-keys, dotted keys and depth, then
// the same field rules (Decoder.Validate). It lists only the first
// problem, not all of them, so it does less than the real decoder; it is
// kept to compare the two on the same inputs as BenchmarkDecode:
//
//	go test -run '^$' -bench 'Decode' -benchmem ./events/
func BenchmarkDecodeAlternative(b *testing.B) {
	for _, c := range decodeBenchCases(b) {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeWithUnmarshal(c.data, c.fallback); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestDecodeAlternativeAgreesOnTheBenchmarkInputs keeps the comparison
// honest: both decoders accept the benchmark's events and read the same
// event from them.
func TestDecodeAlternativeAgreesOnTheBenchmarkInputs(t *testing.T) {
	for _, c := range decodeBenchCases(t) {
		want, err := (Decoder{}).DecodeWithFallbackID(c.data, c.fallback)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got, err := decodeWithUnmarshal(c.data, c.fallback)
		if err != nil {
			t.Fatalf("%s: alternative: %v", c.name, err)
		}
		if got.ID != want.ID || got.User.ID != want.User.ID || !got.Time.Equal(want.Time) ||
			len(got.User.Data) != len(want.User.Data) || len(got.User.Identities) != len(want.User.Identities) {
			t.Fatalf("%s: alternative read %+v, decoder %+v", c.name, got, want)
		}
	}
	for _, bad := range []string{
		`{"id":"a","operationType":"LOGIN","providers":["p"],"user":{"id":"u","data":{"$set":1}},"time":"2024-05-01T12:00:00Z"}`,
		`{"id":"a","operationType":"LOGIN","providers":["p"],"user":{"id":"u","data":{"a.b":1}},"time":"2024-05-01T12:00:00Z"}`,
		`{"id":"a","operationType":"LOGIN","providers":["p"],"user":{"id":"u"},"time":"2024-05-01T12:00:00Z","extra":1}`,
		`{"id":"a","id":"b","operationType":"LOGIN","providers":["p"],"user":{"id":"u"},"time":"2024-05-01T12:00:00Z"}`,
	} {
		if _, err := decodeWithUnmarshal([]byte(bad), ""); err == nil {
			t.Errorf("alternative accepted %s", bad)
		}
	}
}

type benchCase struct {
	name, fallback string
	data           []byte
}

func decodeBenchCases(tb testing.TB) []benchCase {
	typical := NewAuthEvent(OperationLogin, "65f0c1a2b3c4d5e6f7a8b9c0", "local-userpass")
	typical.User.Data = map[string]any{"email": "ada@example.com", "name": "Ada Lovelace"}
	large := typical
	large.User.Data = map[string]any{}
	for i := 0; i < 600; i++ {
		large.User.Data[fmt.Sprintf("%sk%c%s%d", strings.Repeat("k", 8), rune('a'+i%26), strings.Repeat("x", i%7), i)] = strings.Repeat("v", 80)
	}
	var cases []benchCase
	for _, c := range []struct {
		name string
		ev   AuthEvent
	}{{"typical", typical}, {"app-services", typical}, {"near-limit", large}} {
		data, err := json.Marshal(c.ev)
		if err != nil {
			tb.Fatal(err)
		}
		fallback := ""
		if c.name == "app-services" {
			data = []byte(strings.Replace(appServicesEvent, `"2024-05-01T12:00:00.000Z"`, `"`+c.ev.Time.Format(time.RFC3339Nano)+`"`, 1))
			fallback = "AUTH_EVENTS:12345"
		}
		cases = append(cases, benchCase{name: c.name, fallback: fallback, data: data})
	}
	return cases
}

type wireEvent struct {
	SchemaVersion int       `json:"schemaVersion,omitzero"`
	ID            string    `json:"id,omitzero"`
	OperationType Operation `json:"operationType"`
	Providers     []string  `json:"providers"`
	User          wireUser  `json:"user"`
	Time          time.Time `json:"time"`
}

type wireUser struct {
	ID         string         `json:"id"`
	Type       string         `json:"type,omitzero"`
	Identities []wireIdentity `json:"identities,omitzero"`
	Data       map[string]any `json:"data,omitzero"`
	CustomData any            `json:"custom_data,omitzero"`
}

type wireIdentity struct {
	ID           string `json:"id"`
	ProviderType string `json:"provider_type"`
	Data         any    `json:"data,omitzero"`
}

func decodeWithUnmarshal(data []byte, fallback string) (AuthEvent, error) {
	if len(data) > MaxEventBytes {
		return AuthEvent{}, errors.New("too large")
	}
	var w wireEvent
	if err := json.Unmarshal(data, &w, json.RejectUnknownMembers(true)); err != nil {
		return AuthEvent{}, err
	}
	if err := walkKeys(w.User.Data, 3); err != nil {
		return AuthEvent{}, err
	}
	if err := walkKeys(w.User.CustomData, 3); err != nil {
		return AuthEvent{}, err
	}
	for _, id := range w.User.Identities {
		if err := walkKeys(id.Data, 4); err != nil {
			return AuthEvent{}, err
		}
	}
	ev := AuthEvent{SchemaVersion: w.SchemaVersion, ID: w.ID, OperationType: w.OperationType, Providers: w.Providers,
		User: User{ID: w.User.ID, Type: w.User.Type, Data: w.User.Data}, Time: w.Time}
	for _, id := range w.User.Identities {
		ev.User.Identities = append(ev.User.Identities, Identity{ID: id.ID, ProviderType: id.ProviderType})
	}
	if ev.ID == "" {
		ev.ID = fallback
	}
	return ev, (Decoder{}).Validate(ev)
}

func walkKeys(v any, depth int) error {
	if depth > MaxDepth {
		return errors.New("too deep")
	}
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if p := keyProblem([]byte(k)); p != "" {
				return errors.New(p)
			}
			if err := walkKeys(x, depth+1); err != nil {
				return err
			}
		}
	case []any:
		for _, x := range v {
			if err := walkKeys(x, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}
