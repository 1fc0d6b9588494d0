package events

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecode: Decode never panics, every rejection carries a known reason,
// and every accepted event is valid, re-encodes, and decodes again to an
// equal event.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(validEvent))
	for _, s := range []string{
		``, `{}`, `[]`, `null`, `{"id":1}`, validEvent + `{}`,
		strings.Replace(validEvent, `"u1"`, `"a.b *>ü"`, 1),
		strings.Replace(validEvent, `"LOGIN"`, `"DELETE"`, 1),
		strings.Replace(validEvent, `"2024-05-01T12:00:00Z"`, `"2024-05-01T14:00:00.5+02:00"`, 1),
		strings.Replace(validEvent, `"tags"`, `"$tags"`, 1),
		strings.Replace(validEvent, `"email"`, `"e.mail"`, 1),
		strings.Replace(validEvent, `"id":"evt-1"`, `"id":"evt-1","ID":"x"`, 1),
		strings.Replace(validEvent, `"id":"evt-1"`, `"id":"evt-1","id":"x"`, 1),
		strings.Replace(validEvent, `"data":{`, `"data":{"d":{"e":[[{"f":null}]]},`, 1),
		strings.Replace(validEvent, `"u1"`, `"\ud800"`, 1),
		strings.Replace(validEvent, `"u1"`, `"\u00e9\u0000"`, 1),
		`{"user":{"data":` + strings.Repeat(`[`, 20) + strings.Repeat(`]`, 20) + `}}`,
		`{"schemaVersion":1e400}`,
		`{"time":"2024-05-01T12:00:00Z","time":null}`,
	} {
		f.Add([]byte(s))
	}
	known := map[Reason]bool{
		ReasonTooLarge: true, ReasonMalformedJSON: true, ReasonTooDeep: true, ReasonUnknownField: true,
		ReasonForbiddenKey: true, ReasonUnsupportedVersion: true, ReasonMissingField: true,
		ReasonInvalidEventID: true, ReasonUnknownOperation: true, ReasonInvalidProvider: true,
		ReasonInvalidUserID: true, ReasonInvalidTime: true,
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := testDecoder()
		ev, err := d.Decode(data)
		if err != nil {
			if r := ReasonOf(err); !known[r] {
				t.Fatalf("rejection without a known reason: %v", err)
			}
			return
		}
		if err := d.Validate(ev); err != nil {
			t.Fatalf("accepted event fails Validate: %v", err)
		}
		again, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("accepted event does not encode: %v", err)
		}
		if len(again) > MaxEventBytes {
			return // HTML-escaping may grow an event past the limit
		}
		ev2, err := d.Decode(again)
		if err != nil {
			t.Fatalf("re-encoded event rejected: %v\n%s", err, again)
		}
		if !eventsEqual(ev, ev2) {
			t.Fatalf("round trip changed the event:\n%+v\n%+v", ev, ev2)
		}
	})
}

// FuzzUserToken: any UTF-8 id round-trips through its token, tokens use
// only [A-Za-z0-9_-], and any token that decodes is the canonical token of
// what it decodes to (so each user has exactly one subject).
func FuzzUserToken(f *testing.F) {
	for _, id := range trickyIDs {
		f.Add(id)
	}
	for _, s := range []string{"", "QQ", "QR", "Q\nQ", "_w", "YWxs", "a+b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if utf8.ValidString(s) {
			tok := EncodeUserToken(s)
			if !tokenAlphabet.MatchString(tok) {
				t.Fatalf("token %q outside [A-Za-z0-9_-]", tok)
			}
			got, err := DecodeUserToken(tok)
			if err != nil || got != s {
				t.Fatalf("round trip of %q = %q, %v", s, got, err)
			}
			if s != "" {
				subject := UserNoticeSubject(DefaultNoticePrefix, s)
				if got, err := UserIDFromNoticeSubject(DefaultNoticePrefix, subject); err != nil || got != s {
					t.Fatalf("subject round trip of %q = %q, %v", s, got, err)
				}
				if subject == FlushAllSubject(DefaultNoticePrefix) {
					t.Fatalf("user subject equals flush-all")
				}
			}
		}
		if id, err := DecodeUserToken(s); err == nil {
			if EncodeUserToken(id) != s {
				t.Fatalf("token %q decodes to %q, whose token is %q", s, id, EncodeUserToken(id))
			}
			if !utf8.ValidString(id) {
				t.Fatalf("token %q decodes to non-UTF-8", s)
			}
		}
	})
}
