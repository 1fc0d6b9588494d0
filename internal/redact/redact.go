// Package redact removes secrets from connection strings before they are
// logged or printed.
package redact

import "strings"

// secretParams are query parameters of MongoDB and NATS URLs that carry
// secrets.
var secretParams = []string{
	"password", "pass", "token", "secret",
	"tlscertificatekeyfilepassword", "sslclientcertificatekeystorepassword",
	"authmechanismproperties",
}

// URI returns uri with any password in its user info and any secret-bearing
// query parameter replaced by "xxxxx". It handles MongoDB's multi-host form
// (mongodb://u:p@h1,h2/db), which net/url rejects.
func URI(uri string) string {
	if uri == "" {
		return ""
	}
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok {
		return "(unparseable URI redacted)"
	}
	authority, path := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		userinfo, hosts := authority[:at], authority[at+1:]
		if user, _, hasPassword := strings.Cut(userinfo, ":"); hasPassword {
			userinfo = user + ":xxxxx"
		} else if !strings.HasPrefix(strings.ToLower(scheme), "mongodb") {
			// NATS reads a user without a password as a token.
			userinfo = "xxxxx"
		}
		authority = userinfo + "@" + hosts
	}
	if p, query, hasQuery := strings.Cut(path, "?"); hasQuery {
		path = p + "?" + redactQuery(query)
	}
	return scheme + "://" + authority + path
}

func redactQuery(query string) string {
	pairs := strings.Split(query, "&")
	for i, pair := range pairs {
		key, _, _ := strings.Cut(pair, "=")
		lk := strings.ToLower(key)
		for _, s := range secretParams {
			if strings.Contains(lk, s) {
				pairs[i] = key + "=xxxxx"
				break
			}
		}
	}
	return strings.Join(pairs, "&")
}

// URIs redacts each URI of a comma-separated list (NATS server lists).
func URIs(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		parts[i] = URI(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}
