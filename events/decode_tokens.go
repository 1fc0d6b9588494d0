package events

import (
	"bytes"
	"errors"
	"io"

	"github.com/go-json-experiment/json/jsontext"
)

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
