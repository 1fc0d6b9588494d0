package events

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// The decoder reads an event in one pass over jsontext's token reader,
// which is strict by construction: RFC 8259 syntax only, a repeated name
// in an object is an error, names are compared exactly. On top of it the
// walk below checks every key at every depth (MongoDB must never see a
// $-key or a dotted key, wherever it sits), the depth, the exact spelling
// and type of the typed fields, and builds the event as it goes. It keeps
// reading after a problem that leaves the JSON readable (a wrong type, an
// unknown or forbidden key, a too-deep value), so that a rejection lists
// every problem; only an error that leaves the rest unreadable ends the
// reading: a syntax error, a repeated name (which the reader refuses as
// one), a top level that is not an object, nesting beyond the reader's
// own bound.
//
// Why hand-written, measured against json.Unmarshal of encoding/json/v2
// (go-json-experiment) with RejectUnknownMembers plus a walk over the
// untyped values (BenchmarkDecodeAlternative, same inputs as
// BenchmarkDecode; 2 shared cores, three runs each): a typical LOGIN
// costs the same (4.5–6.4 µs here, 3.3–6.4 µs there), App Services' own
// event shape 6–8 µs here against 17–23 µs there (35 allocations against
// 7), an event near the 64 KiB limit the same. So it wins only on the App
// Services shape; what keeps it is what Unmarshal cannot give without a
// second pass: every problem of an event in one rejection, each with its
// reason (too_deep, forbidden_key, unknown_field… the dead-letter
// contract) and its path, where Unmarshal stops at the first error.

// decodeOptions: an escaped lone surrogate (\ud800) decodes to U+FFFD, as
// encoding/json does (the user-id rule then refuses it there); raw invalid
// UTF-8 is refused before parsing. Repeated names stay errors (default).
var decodeOptions = jsontext.AllowInvalidUTF8(true)

// shareLimit: the strings of an event up to this size are cut from one
// copy of the input, one allocation for all of them. A larger event
// copies each string, so that a string kept from it (a user id in a
// cache) does not pin up to 64 KiB.
const shareLimit = 4 << 10

// parser is the state of one decode. Parsers are pooled: the jsontext
// decoder and the scratch buffers are reused, nothing of an event is kept.
type parser struct {
	in         bytes.Buffer
	dec        jsontext.Decoder
	src        string // copy of the input, if it is shared by the strings
	ps         problems
	scratch    []byte
	providers  []string
	identities []Identity
	fatal      bool // a syntax error: nothing more can be read
	tooDeep    bool
}

// parserPool holds idle parsers. It is a cache without meaning: any parser
// from it behaves like a new one.
var parserPool = sync.Pool{New: func() any { return new(parser) }}

// parseEvent reads data into an event, adding every problem it finds to
// ps. bad names the typed fields whose value had the wrong type (they are
// zero in ev). ok is false if the event could not be read to its end, in
// which case the field rules are not checked.
func parseEvent(data []byte, ps *problems) (ev AuthEvent, bad fields, ok bool) {
	if len(data) > MaxEventBytes {
		ps.add(ReasonTooLarge, "event is %d bytes, limit %d", len(data), MaxEventBytes)
		return ev, 0, false
	}
	if !utf8.Valid(data) {
		ps.add(ReasonMalformedJSON, "event is not valid UTF-8")
		return ev, 0, false
	}
	p := parserPool.Get().(*parser)
	p.in = *bytes.NewBuffer(data)
	p.dec.Reset(&p.in, decodeOptions)
	p.ps = *ps // by value: ps itself stays on the caller's stack
	if len(data) <= shareLimit {
		p.src = string(data)
	}
	ev, bad = p.event()
	ok = !p.fatal
	*ps = p.ps
	p.release()
	return ev, bad, ok
}

// release returns p to the pool without anything of the event.
func (p *parser) release() {
	p.in = bytes.Buffer{}
	p.dec.Reset(&p.in)
	clear(p.providers)
	clear(p.identities)
	p.src, p.ps, p.fatal, p.tooDeep = "", problems{}, false, false
	parserPool.Put(p)
}

// event reads the top-level object.
func (p *parser) event() (ev AuthEvent, bad fields) {
	switch p.dec.PeekKind() {
	case '{':
	case 0:
		if _, err := p.dec.ReadToken(); err == io.EOF {
			p.ps.add(ReasonMalformedJSON, "empty input")
			p.fatal = true
		} else {
			p.fail(err)
		}
		return ev, bad
	default:
		p.ps.add(ReasonMalformedJSON, "event must be a JSON object")
		p.fatal = true
		return ev, bad
	}
	p.token()
	for !p.fatal {
		raw, name, more := p.name()
		if !more {
			break
		}
		if kp := keyProblem(name); kp != "" {
			p.ps.add(ReasonForbiddenKey, "%s", kp)
			p.walk("a refused member", false)
			continue
		}
		var ok bool
		switch string(name) {
		case "schemaVersion":
			if ev.SchemaVersion, ok = p.schemaVersion(); !ok {
				bad |= fieldSchemaVersion
			}
		case "id":
			if ev.ID, ok = p.string("id"); !ok {
				bad |= fieldID
			}
		case "operationType":
			var op string
			if op, ok = p.string("operationType"); !ok {
				bad |= fieldOperation
			}
			ev.OperationType = operation(op)
		case "providers":
			if ev.Providers, ok = p.providerList(); !ok {
				bad |= fieldProviders
			}
		case "user":
			p.user(&ev.User, &bad)
		case "time":
			if ev.Time, ok = p.time(); !ok {
				bad |= fieldTime
			}
		default:
			p.unknown("", raw)
		}
	}
	if !p.fatal {
		if _, err := p.dec.ReadToken(); err != io.EOF {
			p.ps.add(ReasonMalformedJSON, "trailing data after the event")
			p.fatal = true
		}
	}
	return ev, bad
}

// user reads the user object.
func (p *parser) user(u *User, bad *fields) {
	switch p.dec.PeekKind() {
	case '{':
	case 'n':
		p.token()
		return
	default:
		p.wrongType("user", "an object")
		*bad |= fieldUserID
		return
	}
	p.token()
	for !p.fatal {
		raw, name, more := p.name()
		if !more {
			return
		}
		if kp := keyProblem(name); kp != "" {
			p.ps.add(ReasonForbiddenKey, "user: %s", kp)
			p.walk("a refused member of user", false)
			continue
		}
		var ok bool
		switch string(name) {
		case "id":
			if u.ID, ok = p.string("user.id"); !ok {
				*bad |= fieldUserID
			}
		case "type":
			// null means not given; a given type, even empty, is checked
			// (by validate, which also checks events built in code).
			given := p.dec.PeekKind() == '"'
			if u.Type, ok = p.string("user.type"); ok && given && u.Type == "" {
				p.ps.add(ReasonInvalidUserType, "%s", userTypeRule)
			}
		case "data":
			u.Data = p.object("user.data", true)
		case "custom_data":
			p.object("user.custom_data", false)
		case "identities":
			u.Identities = p.identityList()
		default:
			p.unknown("user.", raw)
		}
	}
}

// identityList reads user.identities.
func (p *parser) identityList() []Identity {
	switch p.dec.PeekKind() {
	case '[':
	case 'n':
		p.token()
		return nil
	default:
		p.wrongType("user.identities", "an array")
		return nil
	}
	p.token()
	p.identities = p.identities[:0]
	for i := 0; !p.fatal; i++ {
		switch p.dec.PeekKind() {
		case ']':
			p.token()
			if len(p.identities) == 0 {
				return []Identity{}
			}
			return append([]Identity(nil), p.identities...)
		case 'n':
			p.token() // null decodes to an empty identity, as encoding/json does
			p.identities = append(p.identities, Identity{})
		case '{':
			p.token()
			p.identities = append(p.identities, p.identity(i))
		case 0:
			p.syntax()
		default:
			p.ps.add(ReasonMalformedJSON, "user.identities[%d] has the wrong type (want an object)", i)
			p.walk("user.identities", false)
		}
	}
	return nil
}

// identity reads the members of one identity, after its '{'.
func (p *parser) identity(i int) Identity {
	var id Identity
	for !p.fatal {
		raw, name, more := p.name()
		if !more {
			break
		}
		if kp := keyProblem(name); kp != "" {
			p.ps.add(ReasonForbiddenKey, "user.identities[%d]: %s", i, kp)
			p.walk("a refused member of user.identities", false)
			continue
		}
		switch string(name) {
		case "id":
			id.ID = p.identityString(i, "id")
		case "provider_type":
			id.ProviderType = p.identityString(i, "provider_type")
		case "data":
			p.object("user.identities[].data", false)
		default:
			p.unknown("user.identities["+strconv.Itoa(i)+"].", raw)
		}
	}
	return id
}

// identityString reads a string member of identity i.
func (p *parser) identityString(i int, field string) string {
	switch p.dec.PeekKind() {
	case '"', 'n':
		s, _ := p.string("")
		return s
	default:
		p.wrongType("user.identities["+strconv.Itoa(i)+"]."+field, "a string")
		return ""
	}
}

// providerList reads providers; null elements read as "" (and fail the
// provider rule later), as encoding/json decodes them.
func (p *parser) providerList() ([]string, bool) {
	switch p.dec.PeekKind() {
	case '[':
	case 'n':
		p.token()
		return nil, true
	default:
		p.wrongType("providers", "an array of strings")
		return nil, false
	}
	p.token()
	p.providers = p.providers[:0]
	ok := true
	for i := 0; !p.fatal; i++ {
		switch p.dec.PeekKind() {
		case ']':
			p.token()
			if !ok {
				return nil, false
			}
			return append(make([]string, 0, len(p.providers)), p.providers...), true
		case '"':
			p.providers = append(p.providers, p.str(p.value()))
		case 'n':
			p.token()
			p.providers = append(p.providers, "")
		case 0:
			p.syntax()
		default:
			p.ps.add(ReasonMalformedJSON, "providers[%d] has the wrong type (want a string)", i)
			p.walk("providers", false)
			ok = false
		}
	}
	return nil, false
}

// schemaVersion reads schemaVersion: null means absent, like a missing
// member; 0 and negative numbers are unsupported versions.
func (p *parser) schemaVersion() (int, bool) {
	switch p.dec.PeekKind() {
	case '0':
	case 'n':
		p.token()
		return 0, true
	default:
		p.wrongType("schemaVersion", "an integer")
		return 0, false
	}
	n, ok := parseInt(p.value())
	if !ok {
		p.ps.add(ReasonMalformedJSON, "schemaVersion has the wrong type (want an integer)")
		return 0, false
	}
	if n != SchemaVersion {
		p.ps.add(ReasonUnsupportedVersion, "schemaVersion %d is not supported (want %d)", n, SchemaVersion)
		return 0, false
	}
	return n, true
}

// parseInt parses a JSON number that is an integer literal fitting an int
// (encoding/json refuses 1.0 and 1e0 for an int field, and so do we).
func parseInt(v []byte) (int, bool) {
	neg := len(v) > 0 && v[0] == '-'
	if neg {
		v = v[1:]
	}
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// string reads a string member; null reads as "" (absent).
func (p *parser) string(where string) (string, bool) {
	switch p.dec.PeekKind() {
	case '"':
		return p.str(p.value()), true
	case 'n':
		p.token()
		return "", true
	default:
		p.wrongType(where, "a string")
		return "", false
	}
}

// time reads the event time: an RFC 3339 string (what JSON.stringify
// makes of a JavaScript Date), parsed as strictly as encoding/json does.
func (p *parser) time() (time.Time, bool) {
	var t time.Time
	switch p.dec.PeekKind() {
	case '"':
	case 'n':
		p.token()
		return t, true
	default:
		p.wrongType("time", "an RFC 3339 string")
		return t, false
	}
	if err := t.UnmarshalText(p.unquote(p.value())); err != nil {
		p.ps.add(ReasonInvalidTime, "time is not RFC 3339")
		return time.Time{}, false
	}
	return t, true
}

// object reads a free-form object (user data, custom data, identity data):
// null or an object whose keys are checked at every depth. With build it
// returns the object as encoding/json would decode it into a map.
func (p *parser) object(where string, build bool) map[string]any {
	switch p.dec.PeekKind() {
	case '{':
	case 'n':
		p.token()
		return nil
	default:
		p.wrongType(where, "an object")
		return nil
	}
	m, _ := p.walk(where, build).(map[string]any)
	return m
}

// walk reads one value of a free-form part, or a value that is refused,
// checking every key in it and its depth. With build it returns the value
// as encoding/json decodes into an any (objects as map[string]any, arrays
// as []any, numbers as float64).
func (p *parser) walk(where string, build bool) any {
	switch kind := p.dec.PeekKind(); kind {
	case '{', '[':
		if p.dec.StackDepth() >= MaxDepth {
			if !p.tooDeep {
				p.tooDeep = true
				p.ps.add(ReasonTooDeep, "nesting deeper than %d", MaxDepth)
			}
			// The reader has its own depth bound (10000): a value deeper
			// than that cannot be skipped, and reading stops there, with
			// too_deep already reported.
			if err := p.dec.SkipValue(); err != nil {
				p.fatal = true
			}
			return nil
		}
		p.token()
		if kind == '{' {
			return p.walkObject(where, build)
		}
		return p.walkArray(where, build)
	case '"':
		v := p.value()
		if build {
			return p.str(v)
		}
	case '0':
		v := p.value()
		if build {
			f, err := strconv.ParseFloat(p.raw(v), 64)
			if err != nil {
				p.ps.add(ReasonMalformedJSON, "%s holds a number out of range", where)
			}
			return f
		}
	case 't':
		p.token()
		if build {
			return true
		}
	case 'f':
		p.token()
		if build {
			return false
		}
	case 'n':
		p.token()
	default:
		p.syntax()
	}
	return nil
}

func (p *parser) walkObject(where string, build bool) any {
	var m map[string]any
	if build {
		m = make(map[string]any)
	}
	for !p.fatal {
		raw, name, more := p.name()
		if !more {
			break
		}
		if kp := keyProblem(name); kp != "" {
			p.ps.add(ReasonForbiddenKey, "%s: %s", where, kp)
			p.walk(where, false)
			continue
		}
		if !build {
			p.walk(where, false)
			continue
		}
		key := p.str(raw)
		m[key] = p.walk(where, true)
	}
	if !build {
		return nil
	}
	return m
}

func (p *parser) walkArray(where string, build bool) any {
	var a []any
	if build {
		a = []any{}
	}
	for !p.fatal {
		switch p.dec.PeekKind() {
		case ']':
			p.token()
			if !build {
				return nil
			}
			return a
		case 0:
			p.syntax()
		default:
			v := p.walk(where, build)
			if build {
				a = append(a, v)
			}
		}
	}
	return nil
}

// name reads the next member name of the current object, or its end
// (more is false). raw is the quoted name, unquoted its content.
func (p *parser) name() (raw jsontext.Value, unquoted []byte, more bool) {
	switch p.dec.PeekKind() {
	case '}':
		p.token()
		return nil, nil, false
	case '"':
		raw = p.value()
		if p.fatal {
			return nil, nil, false
		}
		return raw, p.unquote(raw), true
	default:
		p.syntax()
		return nil, nil, false
	}
}

// unknown reports a member whose name is not in the schema and reads its
// value (its keys are still checked).
func (p *parser) unknown(prefix string, raw jsontext.Value) {
	field := prefix + string(p.unquote(raw))
	p.ps.add(ReasonUnknownField, "unknown field %q", field)
	p.walk(field, false)
}

// wrongType reports a member of the wrong JSON type and reads its value.
func (p *parser) wrongType(where, want string) {
	if p.dec.PeekKind() == 0 {
		p.syntax()
		return
	}
	p.ps.add(ReasonMalformedJSON, "%s has the wrong type (want %s)", where, want)
	p.walk(where, false)
}

// token reads a token already peeked at (a delimiter or a literal).
func (p *parser) token() {
	if _, err := p.dec.ReadToken(); err != nil {
		p.fail(err)
	}
}

// value reads a string or number already peeked at. The result is valid
// until the next read.
func (p *parser) value() jsontext.Value {
	v, err := p.dec.ReadValue()
	if err != nil {
		p.fail(err)
		return nil
	}
	return v
}

// syntax records the syntax error the reader holds.
func (p *parser) syntax() {
	_, err := p.dec.ReadToken()
	if err == nil {
		err = errors.New("unexpected token")
	}
	p.fail(err)
}

// fail records a syntax error; nothing after it can be read.
func (p *parser) fail(err error) {
	if p.fatal {
		return
	}
	p.fatal = true
	var se *jsontext.SyntacticError
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		p.ps.add(ReasonMalformedJSON, "the event ends early")
	case errors.As(err, &se) && se.Err == jsontext.ErrDuplicateName:
		p.ps.add(ReasonMalformedJSON, "an object repeats a key (%s)", se.JSONPointer)
	case errors.As(err, &se):
		p.ps.add(ReasonMalformedJSON, "not valid JSON at byte %d: %v", se.ByteOffset, se.Err)
	default:
		p.ps.add(ReasonMalformedJSON, "not valid JSON: %v", err)
	}
}

// unquote returns the content of the JSON string v; it may use the
// scratch buffer, valid until the next unquote.
func (p *parser) unquote(v jsontext.Value) []byte {
	if len(v) < 2 {
		return nil
	}
	if bytes.IndexByte(v, '\\') < 0 {
		return v[1 : len(v)-1]
	}
	// The reader validated the string; the only error left is an escaped
	// lone surrogate, which becomes U+FFFD.
	p.scratch, _ = jsontext.AppendUnquote(p.scratch[:0], v)
	return p.scratch
}

// str returns the JSON string v, the value read last, as a Go string: a
// slice of the shared input copy when it has no escapes.
func (p *parser) str(v jsontext.Value) string {
	if len(v) < 2 {
		return "" // after a read error
	}
	if p.src != "" && bytes.IndexByte(v, '\\') < 0 {
		end := int(p.dec.InputOffset())
		return p.src[end-len(v)+1 : end-1]
	}
	return string(p.unquote(v))
}

// raw returns the bytes of v, the value read last, as a string.
func (p *parser) raw(v jsontext.Value) string {
	if p.src != "" && len(v) > 0 {
		end := int(p.dec.InputOffset())
		return p.src[end-len(v) : end]
	}
	return string(v)
}

// operation returns op as one of the constants when it is one, so that
// the event does not keep a copy of it.
func operation(op string) Operation {
	for _, o := range [...]Operation{OperationLogin, OperationCreate, OperationDelete} {
		if op == string(o) {
			return o
		}
	}
	return Operation(op)
}
