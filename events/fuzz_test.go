package events

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecode: Decode never panics, every rejection carries a known reason
// and lists its problems with the most important first, and every
// accepted event is valid, re-encodes, and decodes again to an equal
// event; a fallback id changes nothing for an event that has its own.
func FuzzDecode(f *testing.F) {
	for _, s := range decodeSeeds() {
		f.Add([]byte(s))
	}
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
		strings.Replace(validEvent, `"schemaVersion":1,"id":"evt-1",`, ``, 1),
		strings.Replace(validEvent, `"type":"normal",`, `"type":"server","custom_data":{"plan":"x","n":[{"a":null}]},`, 1),
		strings.Replace(validEvent, `"provider_type":"local-userpass"`, `"provider_type":"local-userpass","data":{"e":"x"}`, 1),
		strings.Replace(validEvent, `"providers":["local-userpass"]`, `"providers":["Bad",1],"extra":{"$x":1}`, 1),
	} {
		f.Add([]byte(s))
	}
	known := map[Reason]bool{
		ReasonTooLarge: true, ReasonMalformedJSON: true, ReasonTooDeep: true, ReasonUnknownField: true,
		ReasonForbiddenKey: true, ReasonUnsupportedVersion: true, ReasonMissingField: true,
		ReasonInvalidEventID: true, ReasonUnknownOperation: true, ReasonInvalidProvider: true,
		ReasonInvalidUserID: true, ReasonInvalidUserType: true, ReasonInvalidTime: true,
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := testDecoder()
		ev, err := d.Decode(data)
		withFallback, fbErr := d.DecodeWithFallbackID(data, "fallback-1")
		if err != nil {
			if r := ReasonOf(err); !known[r] {
				t.Fatalf("rejection without a known reason: %v", err)
			}
			re := err.(*RejectError)
			if len(re.Problems) == 0 || len(re.Problems) > MaxProblems || re.Problems[0].Reason != re.Reason {
				t.Fatalf("problems not listed primary first: %+v", re)
			}
			for _, p := range re.Problems {
				if !known[p.Reason] || p.Reason.rank() < re.Reason.rank() {
					t.Fatalf("problem %+v: unknown, or more important than the primary %s", p, re.Reason)
				}
			}
			if fbErr == nil && withFallback.ID != "fallback-1" {
				t.Fatalf("rejected without a fallback id, accepted with one under id %q", withFallback.ID)
			}
			return
		}
		if fbErr != nil || !eventsEqual(ev, withFallback) {
			t.Fatalf("a fallback id changed the verdict on an event with an id: %v", fbErr)
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

// decodeSeeds are variations of validEvent touching every rule, each
// typed field with each wrong type, and the App Services shape.
func decodeSeeds() []string {
	seeds := []string{validEvent, ``, `{}`, `[]`, `null`, `{"id":1}`, validEvent + `{}`, validEvent + ` x`,
		`{"schemaVersion":1e400}`, `{"time":"2024-05-01T12:00:00Z","time":null}`,
		`{"user":{"data":` + strings.Repeat(`[`, 20) + strings.Repeat(`]`, 20) + `}}`,
	}
	for _, r := range [][2]string{
		{`"u1"`, `"a.b *>ü"`}, {`"LOGIN"`, `"DELETE"`}, {`"LOGIN"`, `"login"`}, {`"LOGIN"`, `null`},
		{`"2024-05-01T12:00:00Z"`, `"2024-05-01T14:00:00.5+02:00"`}, {`"2024-05-01T12:00:00Z"`, `"2024-05-01"`},
		{`"2024-05-01T12:00:00Z"`, `1`}, {`"2024-05-01T12:00:00Z"`, `null`},
		{`"tags"`, `"$tags"`}, {`"email"`, `"e.mail"`}, {`"email"`, `"e\u0000"`}, {`"email"`, `"\u0024x"`},
		{`"id":"evt-1"`, `"id":"evt-1","ID":"x"`}, {`"id":"evt-1"`, `"id":"evt-1","id":"x"`},
		{`"id":"evt-1"`, `"id":null`}, {`"id":"evt-1"`, `"id":7`}, {`"id":"evt-1"`, `"id":"a b"`},
		{`"data":{`, `"data":{"d":{"e":[[{"f":null}]]},`}, {`"data":{`, `"data":{"n":[1.5,-0,1e3,true,false,null],`},
		{`"data":{`, `"data":{"big":1e400,`}, {`"data":{`, `"data":{"a":1,"a":2,`},
		{`"u1"`, `"\ud800"`}, {`"u1"`, `"\u00e9\u0000"`}, {`"u1"`, `"u\u200b"`}, {`"u1"`, `1`}, {`"u1"`, `null`},
		{`"schemaVersion":1`, `"schemaVersion":2`}, {`"schemaVersion":1`, `"schemaVersion":1.0`},
		{`"schemaVersion":1`, `"schemaVersion":"1"`}, {`"schemaVersion":1`, `"schemaVersion":-1`},
		{`["local-userpass"]`, `[]`}, {`["local-userpass"]`, `null`}, {`["local-userpass"]`, `["Bad"]`},
		{`["local-userpass"]`, `[null]`}, {`["local-userpass"]`, `[1]`}, {`["local-userpass"]`, `"local-userpass"`},
		{`"identities":[`, `"identities":[null,`}, {`"identities":[`, `"identities":[1,`},
		{`"provider_type"`, `"providerType"`}, {`"type":"normal"`, `"type":1`}, {`"type":"normal"`, `"Type":"x"`},
		{`"user":{`, `"user":{"$x":1,`}, {`"user":{`, `"User":{`}, {`"data":{`, `"data":[],"x":{`},
	} {
		seeds = append(seeds, strings.Replace(validEvent, r[0], r[1], 1))
	}
	return seeds
}
