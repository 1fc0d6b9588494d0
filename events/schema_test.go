package events

import (
	"bytes"
	"encoding/json"
	"go/ast"
	goparser "go/parser"
	"go/token"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The JSON Schemas (2020-12) of events/schema are the contracts for
// producers and issuers in other languages. These tests hold them to the
// Go code: every example this package gives validates, and on the
// decoders' own tables of good and bad input the schemas decide as the
// decoders do, except where a schema cannot say what the decoder checks
// (each such case listed, with why, and checked to still differ).

func loadSchema(t *testing.T, name string) (*jsonschema.Schema, map[string]any) {
	t.Helper()
	f, err := os.Open("schema/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	m, _ := doc.(map[string]any)
	id, _ := m["$id"].(string)
	if m["$schema"] != "https://json-schema.org/draft/2020-12/schema" || !strings.HasSuffix(id, "/events/schema/"+name) {
		t.Fatalf("%s: $schema %v, $id %v", name, m["$schema"], m["$id"])
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(id, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(id)
	if err != nil {
		t.Fatalf("%s does not compile: %v", name, err)
	}
	return s, m
}

// accepts reports whether data, parsed as a JSON Schema validator parses
// it, is valid against s; why says why not.
func accepts(s *jsonschema.Schema, data []byte) (ok bool, why string) {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return false, "not JSON: " + err.Error()
	}
	if err := s.Validate(inst); err != nil {
		return false, err.Error()
	}
	return true, ""
}

// jsonBlockAfter is the first ```json block of the README after heading.
func jsonBlockAfter(t *testing.T, heading string) []byte {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), heading)
	if !ok {
		t.Fatalf("README has no %q", heading)
	}
	_, rest, ok = strings.Cut(rest, "```json\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatalf("README: no JSON block after %q", heading)
	}
	return []byte(block)
}

// definedFlushReasons reads every FlushReason constant from notice.go,
// so that a reason added there cannot be missed here.
func definedFlushReasons(t *testing.T) []FlushReason {
	t.Helper()
	f, err := goparser.ParseFile(token.NewFileSet(), "notice.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []FlushReason
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			v := spec.(*ast.ValueSpec)
			if id, ok := v.Type.(*ast.Ident); !ok || id.Name != "FlushReason" {
				continue
			}
			for _, val := range v.Values {
				lit, ok := val.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("notice.go: a FlushReason constant that is not a string literal: %#v", val)
				}
				r, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, FlushReason(r))
			}
		}
	}
	if len(out) < 9 {
		t.Fatalf("notice.go: found %d flush reasons, want at least 9", len(out))
	}
	return out
}

// TestFlushReasonsAreListed: every flush reason is named where the notice
// contract lists them for issuers in other languages: the schema's
// description and examples of reason, and the README's sentence on a
// flush-all's reason.
func TestFlushReasonsAreListed(t *testing.T) {
	_, doc := loadSchema(t, "notice.schema.json")
	props, _ := doc["properties"].(map[string]any)
	reason, _ := props["reason"].(map[string]any)
	desc, _ := reason["description"].(string)
	examples, _ := reason["examples"].([]any)
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(string(b), "carries `kind:\"flush_all\"` and `reason`:")
	readme, _, _ := strings.Cut(after, "\n\n")
	if readme == "" {
		t.Fatal("README: no sentence on a flush-all's reason")
	}
	flushReasons := definedFlushReasons(t)
	for _, r := range flushReasons {
		if !strings.Contains(desc, string(r)) {
			t.Errorf("notice schema: reason's description does not name %s", r)
		}
		if !slices.Contains(examples, any(string(r))) {
			t.Errorf("notice schema: reason's examples lack %s", r)
		}
		if !strings.Contains(readme, "`"+string(r)+"`") {
			t.Errorf("README: the flush-all reasons do not name %s", r)
		}
	}
	if len(examples) != len(flushReasons) {
		t.Errorf("notice schema: %d reason examples, %d reasons defined", len(examples), len(flushReasons))
	}
}

// exampleNotice is the notice ExampleDecodeNotice decodes, read from
// example_test.go.
func exampleNotice(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, fn, _ := strings.Cut(string(b), "func ExampleDecodeNotice()")
	lit, _, _ := strings.Cut(fn, "n, err := events.DecodeNotice")
	var out strings.Builder
	for _, m := range regexp.MustCompile("`([^`]*)`").FindAllStringSubmatch(lit, -1) {
		out.WriteString(m[1])
	}
	if out.Len() == 0 {
		t.Fatal("no notice in ExampleDecodeNotice")
	}
	return []byte(out.String())
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSchemasValidateThePackagesExamples(t *testing.T) {
	eventSchema, _ := loadSchema(t, "auth-event.schema.json")
	noticeSchema, _ := loadSchema(t, "notice.schema.json")

	full := NewAuthEvent(OperationCreate, "ada@example.com", "local-userpass", "oauth2-google")
	full.User.Type = UserTypeNormal
	full.User.Identities = []Identity{{ID: "6f1c0d3e", ProviderType: "local-userpass"}}
	full.User.Data = map[string]any{"email": "ada@example.com", "tags": []any{"a", map[string]any{"k": 1}}}
	evs := map[string][]byte{
		"README, Event contract":                 jsonBlockAfter(t, "## Event contract (auth services → worker)"),
		"NewAuthEvent LOGIN, as Publisher sends": marshal(t, NewAuthEvent(OperationLogin, "user-42", "local-userpass")),
		"NewAuthEvent DELETE":                    marshal(t, NewAuthEvent(OperationDelete, "ユーザー.*>", "custom-function")),
		"an event with everything":               marshal(t, full),
		"App Services' own event":                []byte(appServicesEvent),
		"the decoder tests' reference event":     []byte(validEvent),
	}
	for name, b := range evs {
		if ok, why := accepts(eventSchema, b); !ok {
			t.Errorf("auth event %s does not validate: %s\n%s", name, why, b)
		}
	}

	published := time.Date(2026, 11, 25, 17, 58, 37, 209e6, time.UTC)
	notices := map[string][]byte{
		"README, Notice contract":      jsonBlockAfter(t, "Payload (`events.Notice`"),
		"README, heartbeat":            []byte(`{"schemaVersion":1,"kind":"heartbeat"}`),
		"ExampleDecodeNotice's notice": exampleNotice(t),
		"a user notice as the worker writes it": marshal(t, Notice{SchemaVersion: NoticeSchemaVersion, Kind: NoticeUser, UserID: "ada@example.com",
			DocumentID: "621b2886c971ec914881d99a", Operation: "update", ChangedFields: []string{"lastLogin"},
			ClusterTime: &ClusterTime{T: 1795627298, I: 3}, Oversize: true, PublishedAt: published}),
		"a delete naming only the document": marshal(t, Notice{SchemaVersion: NoticeSchemaVersion, Kind: NoticeUser, DocumentID: `{"$oid":"x"}`,
			Operation: "delete", PublishedAt: published}),
		"a heartbeat as the worker writes it": marshal(t, Notice{SchemaVersion: NoticeSchemaVersion, Kind: NoticeHeartbeat, PublishedAt: published}),
		"a partitioned notifier's heartbeat": marshal(t, Notice{SchemaVersion: NoticeSchemaVersion, Kind: NoticeHeartbeat, Partition: 2, Partitions: 4,
			PublishedAt: published}),
		"the last partition of the most": marshal(t, Notice{SchemaVersion: NoticeSchemaVersion, Kind: NoticeHeartbeat, Partition: MaxNoticePartitions - 1,
			Partitions: MaxNoticePartitions}),
	}
	flushReasons := definedFlushReasons(t)
	for _, r := range flushReasons {
		notices["flush-all "+string(r)] = marshal(t, Notice{SchemaVersion: NoticeSchemaVersion, Kind: NoticeFlushAll, Reason: r,
			Operation: "invalidate", PublishedAt: published})
	}
	for name, b := range notices {
		if _, err := DecodeNotice(b); err != nil {
			t.Errorf("notice %s: DecodeNotice: %v", name, err)
		}
		if ok, why := accepts(noticeSchema, b); !ok {
			t.Errorf("notice %s does not validate: %s\n%s", name, why, b)
		}
	}
}

// onlyTheDecoder: inputs the decoder refuses and a schema cannot, and
// why.
var onlyTheDecoder = map[string]string{
	"oversize":                   "a schema bounds no encoded size (64 KiB)",
	"too deep objects":           "a schema bounds no nesting depth (16)",
	"too deep arrays":            "a schema bounds no nesting depth (16)",
	"deep but small":             "a schema bounds no nesting depth (16)",
	"duplicate top-level key":    "a validator parses a repeated key as one value",
	"duplicate user":             "a validator parses a repeated key as one value",
	"duplicate key in user.data": "a validator parses a repeated key as one value",
	"far-future time":            "a schema has no clock (5 minutes of skew)",
	"time just beyond the skew":  "a schema has no clock (5 minutes of skew)",
	"too long multibyte user id": "a schema counts characters; the limit is 256 bytes of UTF-8",
}

// TestEventSchemaAgreesWithTheDecoder: on every event of the decoder's
// accept and reject tables, the App Services shapes and the size limit,
// the schema decides as the decoder does for an event delivered with a
// Nats-Msg-Id (so an event without id is accepted), but for the inputs
// of onlyTheDecoder. Every rejection reason that a schema can express has
// a bad event the schema rejects too.
func TestEventSchemaAgreesWithTheDecoder(t *testing.T) {
	s, _ := loadSchema(t, "auth-event.schema.json")
	type input struct {
		name   string
		in     []byte
		reason Reason // the decoder's, for a reject case
	}
	var inputs []input
	for _, c := range rejectCases(t) {
		inputs = append(inputs, input{c.name, c.in, c.want})
	}
	for _, c := range acceptCases(t) {
		inputs = append(inputs, input{c.name, c.in, ""})
	}
	inputs = append(inputs,
		input{"App Services event", []byte(appServicesEvent), ""},
		input{"App Services event with a $date time", appServicesWith(t, `"2024-05-01T12:00:00.000Z"`, `{"$date":"2024-05-01T12:00:00.000Z"}`), ReasonMalformedJSON},
		input{"App Services event, $ key in custom_data", appServicesWith(t, `"plan":`, `"$plan":`), ReasonForbiddenKey},
		input{"App Services event, dotted key in identity data", appServicesWith(t, `"secret-identity-data"`, `"secret.identity"`), ReasonForbiddenKey},
		input{"exactly the size limit", withSize(t, MaxEventBytes), ""},
	)
	expressed := map[Reason]bool{}
	seen := map[Reason]bool{}
	for _, c := range inputs {
		_, decErr := testDecoder().DecodeWithFallbackID(c.in, "nats-msg-id-1")
		ok, why := accepts(s, c.in)
		if reason, known := onlyTheDecoder[c.name]; known {
			if decErr == nil || !ok {
				t.Errorf("%s: listed as refused by the decoder only (%s), but the decoder says %v and the schema %v (%s): remove it from the list",
					c.name, reason, decErr, ok, why)
			}
			continue
		}
		switch {
		case decErr == nil && !ok:
			t.Errorf("%s: the decoder accepts it, the schema does not: %s\n%s", c.name, why, c.in)
		case decErr != nil && ok:
			t.Errorf("%s: the decoder refuses it (%v), the schema accepts it\n%.300s", c.name, decErr, c.in)
		}
		if c.reason != "" {
			seen[c.reason] = true
			expressed[c.reason] = expressed[c.reason] || !ok
		}
	}
	for r := range seen {
		if !expressed[r] && r != ReasonTooLarge && r != ReasonTooDeep {
			t.Errorf("rejection reason %s: no bad event that the schema rejects too", r)
		}
	}
}

// The schema's user-id patterns are the decoder's rule, character by
// character, alone and between letters: every character of the Basic
// Multilingual Plane, every astral format character (Cf) and its
// neighbours, and a sample of the other astral ones.
func TestSchemaUserIDIsTheDecodersRule(t *testing.T) {
	_, doc := loadSchema(t, "auth-event.schema.json")
	def := doc["$defs"].(map[string]any)["userId"].(map[string]any)
	var res []*regexp.Regexp
	for _, p := range def["allOf"].([]any) {
		// The validator's default engine is Go's regexp, as here.
		res = append(res, regexp.MustCompile(p.(map[string]any)["pattern"].(string)))
	}
	schemaOK := func(id string) bool {
		for _, re := range res {
			if !re.MatchString(id) {
				return false
			}
		}
		return utf8.RuneCountInString(id) >= 1
	}
	var runes []rune
	for r := rune(0); r <= 0xFFFF; r++ {
		if r < 0xD800 || r > 0xDFFF { // no string holds a surrogate
			runes = append(runes, r)
		}
	}
	for _, rg := range unicode.Cf.R32 {
		for r := rune(rg.Lo) - 1; r <= rune(rg.Hi)+1; r++ {
			runes = append(runes, r)
		}
	}
	for r := rune(0x10000); r <= utf8.MaxRune; r += 251 {
		runes = append(runes, r)
	}
	for _, r := range runes {
		for _, id := range []string{string(r), "a" + string(r) + "b"} {
			if want := ValidateUserID(id) == nil; schemaOK(id) != want {
				t.Fatalf("user id %+q: the decoder says %v, the schema %v", id, want, !want)
			}
		}
	}
}

// onlyDecodeNotice: notices DecodeNotice and a schema decide differently,
// and why.
var onlyDecodeNotice = map[string]string{
	"trailing data":          "DecodeNotice reads the first JSON value and ignores what follows",
	"member in another case": "encoding/json matches member names without regard to case",
	"cluster time 1.0":       "encoding/json refuses 1.0 for an integer; a schema's integer is any whole number",
	"partitions 2.0":         "encoding/json refuses 2.0 for an integer; a schema's integer is any whole number",
	"partition past 64 bits": "encoding/json refuses an integer Go's int cannot hold; the schema bounds partition only on heartbeats",
}

func TestNoticeSchemaAgreesWithDecodeNotice(t *testing.T) {
	s, _ := loadSchema(t, "notice.schema.json")
	cases := noticeCases()
	for _, c := range []noticeCase{
		{name: "heartbeat", in: `{"schemaVersion":1,"kind":"heartbeat"}`},
		{name: "nulls stand for absent", in: `{"kind":"user","userId":"u","documentId":null,"changedFields":null,"clusterTime":null,"oversize":null,"reason":null,"publishedAt":null}`},
		{name: "a reason of a later version", in: `{"kind":"flush_all","reason":"something_new"}`},
		{name: "user notice with empty ids", in: `{"kind":"user","userId":"","documentId":""}`, wantErr: "x"},
		{name: "oversize not a boolean", in: `{"kind":"user","userId":"u","oversize":"yes"}`, wantErr: "x"},
		{name: "negative cluster time", in: `{"kind":"user","userId":"u","clusterTime":{"t":-1,"i":0}}`, wantErr: "x"},
		{name: "cluster time past 32 bits", in: `{"kind":"user","userId":"u","clusterTime":{"t":4294967296,"i":0}}`, wantErr: "x"},
		{name: "changed fields not an array", in: `{"kind":"user","userId":"u","changedFields":"plan"}`, wantErr: "x"},
		{name: "publishedAt not RFC 3339", in: `{"kind":"flush_all","publishedAt":"yesterday"}`, wantErr: "x"},
		{name: "not an object", in: `["user"]`, wantErr: "x"},
		{name: "trailing data", in: `{"kind":"flush_all"} {`},
		{name: "member in another case", in: `{"KIND":"flush_all"}`},
		{name: "cluster time 1.0", in: `{"kind":"user","userId":"u","clusterTime":{"t":1.0,"i":0}}`, wantErr: "x"},
		{name: "heartbeat of partition 3 of 4", in: `{"kind":"heartbeat","partition":3,"partitions":4}`},
		{name: "heartbeat partition fields null", in: `{"kind":"heartbeat","partition":null,"partitions":null}`},
		{name: "heartbeat partition of 4, partition absent", in: `{"kind":"heartbeat","partitions":4}`},
		{name: "heartbeat partition not below partitions", in: `{"kind":"heartbeat","partition":4,"partitions":4}`, wantErr: "x"},
		{name: "heartbeat partition without partitions", in: `{"kind":"heartbeat","partition":1}`, wantErr: "x"},
		{name: "heartbeat negative partition", in: `{"kind":"heartbeat","partition":-1,"partitions":2}`, wantErr: "x"},
		{name: "heartbeat of 65 partitions", in: `{"kind":"heartbeat","partition":0,"partitions":65}`, wantErr: "x"},
		{name: "heartbeat negative partitions", in: `{"kind":"heartbeat","partitions":-1}`, wantErr: "x"},
		{name: "heartbeat partition a string", in: `{"kind":"heartbeat","partition":"1","partitions":2}`, wantErr: "x"},
		{name: "partitions 2.0", in: `{"kind":"heartbeat","partition":1,"partitions":2.0}`, wantErr: "x"},
		// Only heartbeats say which partition they speak for; elsewhere the
		// members are read as integers and mean nothing.
		{name: "user notice with partition members", in: `{"kind":"user","userId":"u","partition":7,"partitions":2}`},
		{name: "partition past 64 bits", in: `{"kind":"user","userId":"u","partition":9223372036854775808}`, wantErr: "x"},
	} {
		cases = append(cases, c)
	}
	for _, c := range cases {
		_, decErr := DecodeNotice([]byte(c.in))
		ok, why := accepts(s, []byte(c.in))
		if reason, known := onlyDecodeNotice[c.name]; known {
			if (decErr == nil) == ok {
				t.Errorf("%s: listed as decided differently (%s), but both say %v: remove it from the list", c.name, reason, ok)
			}
			continue
		}
		if (decErr == nil) != ok {
			t.Errorf("%s: DecodeNotice says %v, the schema %v (%s)\n%s", c.name, decErr, ok, why, c.in)
		}
	}
}

// TestNoticeSchemaPartitionsAgreeWithDecodeNotice: on every heartbeat
// partition and partition count around the bounds (absent, null, negative,
// 0 to past the maximum), the schema decides as DecodeNotice does.
func TestNoticeSchemaPartitionsAgreeWithDecodeNotice(t *testing.T) {
	s, _ := loadSchema(t, "notice.schema.json")
	values := []string{"", "null", "-1"}
	for i := 0; i <= MaxNoticePartitions+1; i++ {
		values = append(values, strconv.Itoa(i))
	}
	member := func(name, v string) string {
		if v == "" {
			return ""
		}
		return `,"` + name + `":` + v
	}
	for _, count := range values {
		for _, part := range values {
			in := `{"schemaVersion":1,"kind":"heartbeat"` + member("partition", part) + member("partitions", count) + `}`
			_, decErr := DecodeNotice([]byte(in))
			if ok, why := accepts(s, []byte(in)); (decErr == nil) != ok {
				t.Errorf("%s: DecodeNotice says %v, the schema %v (%s)", in, decErr, ok, why)
			}
		}
	}
}
