// Package redact removes secrets from connection strings, and from texts
// that quote them (driver and client errors), before they are logged or
// printed.
//
// Connection strings are redacted structurally: the URI is split into
// scheme, user info, hosts, path and query, the password (or NATS token)
// and secret query values are replaced, and a URI that cannot be split is
// not printed at all. The user info ends at the '@' followed by a valid
// host list and a path and query that parse; when an '@' in the query
// (appName=a@b) also qualifies, the first is taken if it reads as the
// MongoDB driver reads URIs, else the last (more is masked, nothing leaks).
//
// Other texts (errors) are cleaned by the secrets of the URIs they may
// quote: a secret of MinSecretLength (8) bytes or more wherever it occurs,
// a shorter one only where a URI holds it (user info before '@', the value
// of a secret query parameter), so that a password "1" or "admin" neither
// garbles "127.0.0.1" nor reveals itself next to "authSource=admin".
// Fragments Go's URL parser quotes in its errors are masked where quoted.
package redact

import (
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Mask replaces every secret.
const Mask = "xxxxx"

// Unparseable stands for a URI, or the authority of one, that could not be
// parsed: no part of it is printed, since any part could be a secret.
const Unparseable = "(unparseable URI redacted)"

// secretParams are query parameters of MongoDB and NATS URLs that carry
// secrets (matched case-insensitively, as substrings of the key).
var secretParams = []string{
	"password", "pass", "token", "secret",
	"tlscertificatekeyfilepassword", "sslclientcertificatekeystorepassword",
	"authmechanismproperties",
}

// uriParts is a URI split the way a reader of it needs: a scheme, the user
// info (absent when hasUserinfo is false), the host list and the rest
// (path and query).
type uriParts struct {
	scheme      string // without "://"; empty for a schemeless NATS server
	userinfo    string
	hasUserinfo bool
	hosts       string
	path        string // "/db", ""
	query       string // after '?', without it
	hasQuery    bool
}

// split parses uri. The user info ends at the last '@' that is followed by
// a well-formed host list, so a password holding '@', '/', '?' or ':' (which
// drivers accept or at least print before refusing) never spills into what
// is read as hosts or path. ok is false when no such reading exists.
func split(uri string, needScheme bool) (p uriParts, ok bool) {
	rest := uri
	if scheme, r, found := strings.Cut(uri, "://"); found {
		if !validScheme(scheme) {
			return p, false
		}
		p.scheme, rest = scheme, r
	} else if needScheme {
		return p, false
	}
	hostsStart := 0
	if at := lastAtBeforeHosts(rest); at >= 0 {
		p.userinfo, p.hasUserinfo, hostsStart = rest[:at], true, at+1
	}
	after := rest[hostsStart:]
	end := strings.IndexAny(after, "/?")
	if end < 0 {
		end = len(after)
	}
	p.hosts = after[:end]
	if !validHostList(p.hosts) {
		return p, false
	}
	tail := after[end:]
	p.path, p.query, p.hasQuery = strings.Cut(tail, "?")
	return p, true
}

// lastAtBeforeHosts returns the index of the '@' of s that ends the user
// info, or -1. A candidate is an '@' followed by a valid host list (up to
// the next '/' or '?') and by a path and query that parse. When several
// qualify (an '@' in the query, "appName=a@b", or in a password), the first
// is taken only if it reads as MongoDB's driver reads a URI (user info
// without '/', '?' or '@', a query of key=value pairs); otherwise the last,
// so that whatever could be a password is masked rather than printed.
func lastAtBeforeHosts(s string) int {
	var candidates []int
	for i := 0; i < len(s); i++ {
		if s[i] == '@' && validAfterUserinfo(s[i+1:]) {
			candidates = append(candidates, i)
		}
	}
	switch {
	case len(candidates) == 0:
		return -1
	case len(candidates) == 1:
		return candidates[0]
	}
	first := candidates[0]
	if !strings.ContainsAny(s[:first], "/?@") && strictQuery(s[first+1:]) {
		return first
	}
	return candidates[len(candidates)-1]
}

// validAfterUserinfo reports whether s reads as hosts[/path][?query]: a
// valid host list, and a path of at most one segment.
func validAfterUserinfo(s string) bool {
	end := strings.IndexAny(s, "/?")
	if end < 0 {
		return validHostList(s)
	}
	if !validHostList(s[:end]) {
		return false
	}
	path, _, _ := strings.Cut(s[end:], "?")
	return !strings.ContainsAny(strings.TrimPrefix(path, "/"), "/@")
}

// strictQuery reports whether the query of hosts[/path][?query], if any, is
// a list of key=value pairs with plain keys.
func strictQuery(s string) bool {
	_, query, ok := strings.Cut(s, "?")
	if !ok || query == "" {
		return true
	}
	for _, pair := range strings.Split(query, "&") {
		key, _, hasValue := strings.Cut(pair, "=")
		if !hasValue || key == "" {
			return false
		}
		for _, r := range key {
			if !(isAlnum(r) || r == '_' || r == '-' || r == '.') {
				return false
			}
		}
	}
	return true
}

func validScheme(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(isAlnum(r) || r == '+' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// validHostList accepts "h", "h:1", "[::1]:27017", "h1,h2:2" and
// percent-encoded Unix socket paths ("%2Ftmp%2Fm.sock").
func validHostList(s string) bool {
	if s == "" {
		return false
	}
	for _, h := range strings.Split(s, ",") {
		if !validHost(h) {
			return false
		}
	}
	return true
}

func validHost(h string) bool {
	name, port := h, ""
	if strings.HasPrefix(h, "[") {
		end := strings.Index(h, "]")
		if end < 0 {
			return false
		}
		for _, r := range h[1:end] {
			// Hex digits and colons, an IPv4 tail, a zone ("%25eth0").
			if !(isAlnum(r) || r == ':' || r == '.' || r == '%' || r == '-' || r == '_') {
				return false
			}
		}
		name, port = "ipv6", strings.TrimPrefix(h[end+1:], ":")
		if h[end+1:] != "" && !strings.HasPrefix(h[end+1:], ":") {
			return false
		}
	} else if i := strings.LastIndex(h, ":"); i >= 0 {
		name, port = h[:i], h[i+1:]
		if port == "" {
			return false
		}
	}
	if name == "" {
		return false
	}
	for _, r := range name {
		if !(isAlnum(r) || r == '.' || r == '-' || r == '_' || r == '%') {
			return false
		}
	}
	for _, r := range port {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func isAlnum(r rune) bool {
	return r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
}

func isMongo(scheme string) bool { return strings.HasPrefix(strings.ToLower(scheme), "mongodb") }

// URI returns uri with any password in its user info and any secret-bearing
// query parameter replaced by "xxxxx". It handles MongoDB's multi-host form
// (mongodb://u:p@h1,h2/db) and mongodb+srv, which net/url rejects. A URI
// whose authority cannot be parsed is replaced whole by Unparseable.
func URI(uri string) string {
	if uri == "" {
		return ""
	}
	p, ok := split(uri, true)
	if !ok {
		return Unparseable
	}
	return p.redacted()
}

func (p uriParts) redacted() string {
	var b strings.Builder
	if p.scheme != "" {
		b.WriteString(p.scheme + "://")
	}
	if p.hasUserinfo {
		if user, _, hasPassword := strings.Cut(p.userinfo, ":"); hasPassword {
			b.WriteString(user + ":" + Mask)
		} else if isMongo(p.scheme) && !strings.ContainsAny(p.userinfo, "@/?") {
			// A user alone (X.509 subject) is not a secret; one that could
			// also be read as holding a path or query is not printed.
			b.WriteString(p.userinfo)
		} else {
			// NATS reads a user without a password as a token.
			b.WriteString(Mask)
		}
		b.WriteString("@")
	}
	b.WriteString(p.hosts)
	b.WriteString(p.path)
	if p.hasQuery {
		b.WriteString("?" + redactQuery(p.query))
	}
	return b.String()
}

func redactQuery(query string) string {
	pairs := strings.Split(query, "&")
	for i, pair := range pairs {
		key, _, _ := strings.Cut(pair, "=")
		if isSecretParam(key) {
			pairs[i] = key + "=" + Mask
		}
	}
	return strings.Join(pairs, "&")
}

func isSecretParam(key string) bool {
	lk := strings.ToLower(key)
	for _, s := range secretParams {
		if strings.Contains(lk, s) {
			return true
		}
	}
	return false
}

// URIs redacts each URI of a comma-separated list (NATS server lists; NATS
// splits on every comma and reads a server without a scheme as nats://).
func URIs(list string) string {
	parts := strings.Split(list, ",")
	for i, s := range parts {
		s = strings.TrimSpace(s)
		if p, ok := split(s, false); ok {
			parts[i] = p.redacted()
		} else if s != "" {
			parts[i] = Unparseable
		}
	}
	return strings.Join(parts, ",")
}

// Secrets returns what must never be printed of uri: the password (or NATS
// token) of its user info and the values of secret query parameters. When
// the URI cannot be parsed, everything after the scheme is secret. Each is
// returned as written, percent-decoded and as it appears inside a Go quoted
// string (%q in error messages).
func Secrets(uri string) []string {
	var raw []string
	p, ok := split(uri, false)
	switch {
	case !ok:
		_, rest, found := strings.Cut(uri, "://")
		if !found {
			rest = uri
		}
		raw = append(raw, rest)
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			raw = append(raw, rest[:at])
		}
	default:
		if p.hasUserinfo {
			if _, pw, hasPassword := strings.Cut(p.userinfo, ":"); hasPassword {
				raw = append(raw, pw)
			} else if !isMongo(p.scheme) || strings.ContainsAny(p.userinfo, "@/?") {
				raw = append(raw, p.userinfo)
			}
		}
		if p.hasQuery {
			for _, pair := range strings.Split(p.query, "&") {
				if key, v, _ := strings.Cut(pair, "="); isSecretParam(key) {
					raw = append(raw, v)
				}
			}
		}
	}
	var out []string
	for _, s := range raw {
		if s == "" {
			continue
		}
		out = append(out, s)
		if dec, err := url.PathUnescape(s); err == nil && dec != s {
			out = append(out, dec)
		}
		if dec, err := url.QueryUnescape(s); err == nil && dec != s {
			out = append(out, dec)
		}
	}
	for _, s := range out {
		if q := quotedInner(s); q != s {
			out = append(out, q)
		}
	}
	return out
}

// SecretsOfURIs is Secrets of each URI of a comma-separated list.
func SecretsOfURIs(list string) []string {
	var out []string
	for _, s := range strings.Split(list, ",") {
		out = append(out, Secrets(strings.TrimSpace(s))...)
	}
	return out
}

// MinSecretLength is the length from which Text masks a secret wherever
// it occurs. A shorter one ("1", "admin") is masked only where a URI holds
// it, since its characters also occur in hosts, ports and option values
// ("authSource=admin"), where masking them would reveal the secret.
const MinSecretLength = 8

// Text returns s with every secret replaced by "xxxxx", longest first so
// that a secret containing another is cut whole. A secret of
// MinSecretLength bytes or more is replaced wherever it occurs; a shorter
// one only where a URI holds it: as user info (after ':', '/', ',', a
// space, a quote or at the start, and before '@') or as the value of a
// secret query parameter ("password=…").
func Text(s string, secrets ...string) string {
	secrets = slices.Clone(secrets)
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, sec := range secrets {
		switch {
		case sec == "":
		case len(sec) >= MinSecretLength:
			s = strings.ReplaceAll(s, sec, Mask)
		default:
			s = replaceWhereURIHolds(s, sec)
		}
	}
	return s
}

func replaceWhereURIHolds(s, sec string) string {
	var b strings.Builder
	i := 0
	for {
		j := strings.Index(s[i:], sec)
		if j < 0 {
			break
		}
		j += i
		end := j + len(sec)
		b.WriteString(s[i:j])
		if heldByURI(s[:j], s[end:]) {
			b.WriteString(Mask)
		} else {
			b.WriteString(sec)
		}
		i = end
	}
	b.WriteString(s[i:])
	return b.String()
}

// heldByURI reports whether a secret between before and after sits where a
// URI keeps secrets.
func heldByURI(before, after string) bool {
	if strings.HasPrefix(after, "@") {
		if before == "" || strings.ContainsRune(":/, \"'", rune(before[len(before)-1])) {
			return true
		}
	}
	if strings.HasSuffix(before, "=") && (after == "" || strings.ContainsRune("&;,: \t\n\"')#", rune(after[0]))) {
		key := before[:len(before)-1]
		key = key[strings.LastIndexAny(key, "?&; \"'")+1:]
		return isSecretParam(key)
	}
	return false
}

// Err wraps err so that its message has every secret replaced (see Text);
// errors.Is and errors.As still see err. It returns nil for a nil err.
//
// URL parse errors quote the offending fragment of what they parsed (an
// escape such as "%zz", a host): those fragments are cut too, since they
// may be a piece of a password.
func Err(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	// Fragments the URL parser quotes are cut where it quotes them,
	// whatever their length.
	var quoted []string
	var esc url.EscapeError
	if errors.As(err, &esc) {
		quoted = append(quoted, string(esc))
	}
	var host url.InvalidHostError
	if errors.As(err, &host) {
		quoted = append(quoted, string(host))
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// `parse "<url>": invalid port ":pa" after host`: the URL, and
		// every fragment the parser quotes, may hold a password.
		secrets = append(secrets, ue.URL, quotedInner(ue.URL))
		quoted = append(quoted, ue.URL, quotedInner(ue.URL))
		if ue.Err != nil {
			quoted = append(quoted, quotedFragments(ue.Err.Error())...)
		}
	}
	msg := err.Error()
	for _, q := range quoted {
		if q != "" {
			msg = strings.ReplaceAll(msg, strconv.Quote(q), `"`+Mask+`"`)
			msg = strings.ReplaceAll(msg, `"`+q+`"`, `"`+Mask+`"`)
		}
	}
	return &redactedError{msg: Text(msg, secrets...), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func quotedInner(s string) string {
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// quotedFragments returns the Go-quoted strings of an error message, as
// they appear in it.
func quotedFragments(msg string) []string {
	var out []string
	for {
		start := strings.IndexByte(msg, '"')
		if start < 0 {
			return out
		}
		q, err := strconv.QuotedPrefix(msg[start:])
		if err != nil {
			return out
		}
		if len(q) > 2 {
			out = append(out, q[1:len(q)-1])
		}
		msg = msg[start+len(q):]
	}
}
