package events

import "strconv"

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
