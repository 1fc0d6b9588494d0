package issuer

import (
	"encoding/json"

	"github.com/nats-io/nats.go/jetstream"
)

// fakeJS stands in for JetStream in unit tests that never call Run.
type fakeJS struct{ jetstream.JetStream }

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
