package events

import (
	"errors"
	"strings"
	"testing"
)

// FuzzDecodeAgainstLegacy compares the decoder with the one it replaced
// (auth_legacy_test.go) while it is tuned: the same verdict on every
// input, apart from the changes made on purpose (App Services' shape:
// schemaVersion may be left out, custom_data and identity data are
// accepted; an explicit 0 is an unsupported version; escapes in the time
// string are decoded). Where both reject, the old
// reason is among the problems the new decoder lists.
//
//	go test -run '^$' -fuzz '^FuzzDecodeAgainstLegacy$' -fuzztime 60s ./events/
func FuzzDecodeAgainstLegacy(f *testing.F) {
	for _, s := range legacySeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := testDecoder()
		old, oldErr := legacyDecode(d, data)
		got, err := d.Decode(data)
		if oldErr != nil {
			if detail := oldErr.(*RejectError).Detail; detail == "schemaVersion is required" ||
				detail == `unknown field "custom_data"` || detail == `unknown field "data"` ||
				(ReasonOf(oldErr) == ReasonInvalidTime && strings.Contains(string(data), `\`)) {
				return // changed on purpose
			}
			if err == nil {
				t.Fatalf("old decoder rejected (%v), new accepts: %+v", oldErr, got)
			}
			var re *RejectError
			if !errors.As(err, &re) {
				t.Fatalf("not a RejectError: %v", err)
			}
			for _, p := range re.Problems {
				if p.Reason == ReasonOf(oldErr) {
					return
				}
				// The old decoder applied the typed shape inside values of
				// the wrong type too ({"user":[{"x":1}]}); the new one
				// reports the wrong type and checks only the keys inside.
				if ReasonOf(oldErr) == ReasonUnknownField && p.Reason == ReasonMalformedJSON && strings.Contains(p.Detail, "wrong type") {
					return
				}
			}
			t.Fatalf("old reason %q (%v) not among the new problems: %v", ReasonOf(oldErr), oldErr, err)
		}
		if err != nil {
			t.Fatalf("old decoder accepted, new rejects: %v", err)
		}
		if !eventsEqual(old, got) {
			t.Fatalf("decoded differently:\nold %+v\nnew %+v", old, got)
		}
	})
}

func legacySeeds() []string {
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
