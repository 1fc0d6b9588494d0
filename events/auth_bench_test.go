package events

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkDecode measures strict decoding of a typical LOGIN, of App
// Services' own event shape (custom_data, identities, no id: the fallback
// id is used), and of an event near the 64 KiB limit (large user.data).
//
//	go test -run '^$' -bench Decode -benchmem ./events/
func BenchmarkDecode(b *testing.B) {
	typical := NewAuthEvent(OperationLogin, "65f0c1a2b3c4d5e6f7a8b9c0", "local-userpass")
	typical.User.Data = map[string]any{"email": "ada@example.com", "name": "Ada Lovelace"}
	large := typical
	large.User.Data = map[string]any{}
	for i := 0; i < 600; i++ {
		large.User.Data[strings.Repeat("k", 8)+string(rune('a'+i%26))+strings.Repeat("x", i%7)+strconv.Itoa(i)] = strings.Repeat("v", 80)
	}
	for _, c := range []struct {
		name string
		ev   AuthEvent
	}{{"typical", typical}, {"app-services", typical}, {"near-limit", large}} {
		data, err := json.Marshal(c.ev)
		if err != nil {
			b.Fatal(err)
		}
		fallback := ""
		if c.name == "app-services" {
			data = []byte(strings.Replace(appServicesEvent, `"2024-05-01T12:00:00.000Z"`, `"`+c.ev.Time.Format(time.RFC3339Nano)+`"`, 1))
			fallback = "AUTH_EVENTS:12345"
		}
		if len(data) > MaxEventBytes {
			b.Fatalf("%s event is %d bytes, over the limit", c.name, len(data))
		}
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := (Decoder{}).DecodeWithFallbackID(data, fallback); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
