package events

import (
	"bytes"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

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
