package events

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Default subject prefixes.
const (
	// DefaultAuthPrefix is where auth events are published:
	// auth.events.login, auth.events.create, auth.events.delete.
	DefaultAuthPrefix = "auth.events"
	// DefaultNoticePrefix is where invalidation notices are published:
	// customdata.invalidated.user.<token> for one user and
	// customdata.invalidated.all for flush-all.
	DefaultNoticePrefix = "customdata.invalidated"
)

// AuthSubject returns the subject an event of operation op is published on,
// e.g. "auth.events.login".
func AuthSubject(prefix string, op Operation) string {
	return prefix + "." + strings.ToLower(string(op))
}

// AuthSubjects returns the subjects of every operation under prefix.
func AuthSubjects(prefix string) []string {
	subs := make([]string, 0, len(Operations()))
	for _, op := range Operations() {
		subs = append(subs, AuthSubject(prefix, op))
	}
	return subs
}

// OperationForSubject returns the operation a subject under prefix carries.
func OperationForSubject(prefix, subject string) (Operation, bool) {
	last, ok := strings.CutPrefix(subject, prefix+".")
	if !ok {
		return "", false
	}
	op := Operation(strings.ToUpper(last))
	return op, op.Valid() && AuthSubject(prefix, op) == subject
}

// ValidatePrefix checks that prefix is a usable, wildcard-free subject prefix.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return errors.New("subject prefix is empty")
	}
	for _, tok := range strings.Split(prefix, ".") {
		if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
			return fmt.Errorf("subject prefix %q: tokens must be non-empty and contain no wildcards or spaces", prefix)
		}
	}
	return nil
}

// User tokens are unpadded base64url of the user id's UTF-8 bytes: the
// alphabet [A-Za-z0-9_-] is safe in any NATS subject token, and the
// encoding is reversible for any id (ids may contain '.', '*', '>',
// spaces or non-ASCII, none of which may appear in a subject token).
var tokenEncoding = base64.RawURLEncoding

// EncodeUserToken encodes a user id as one subject token.
func EncodeUserToken(userID string) string { return tokenEncoding.EncodeToString([]byte(userID)) }

// DecodeUserToken reverses EncodeUserToken. It accepts only tokens
// EncodeUserToken produces, so each user has exactly one subject: the
// base64 decoder alone would also accept non-zero padding bits ("QR" as
// well as "QQ" for "A") and skip embedded newlines.
func DecodeUserToken(token string) (string, error) {
	b, err := tokenEncoding.DecodeString(token)
	if err != nil {
		return "", fmt.Errorf("user token %q: %w", token, err)
	}
	if !utf8.Valid(b) {
		return "", fmt.Errorf("user token %q: not UTF-8", token)
	}
	if tokenEncoding.EncodeToString(b) != token {
		return "", fmt.Errorf("user token %q: not in canonical form", token)
	}
	return string(b), nil
}

// UserNoticeSubject is the subject of notices about one user:
// <prefix>.user.<token>.
func UserNoticeSubject(prefix, userID string) string {
	return prefix + ".user." + EncodeUserToken(userID)
}

// DocumentNoticeSubject is the subject of a notice that can only name a
// document _id (a delete without pre-image): <prefix>.doc.<token>, where
// token encodes DocumentID the same way user ids are encoded.
func DocumentNoticeSubject(prefix, documentID string) string {
	return prefix + ".doc." + EncodeUserToken(documentID)
}

// FlushAllSubject is the subject meaning "drop everything you cached":
// <prefix>.all. It has one token fewer than any user or document subject,
// so it can never collide with one. Subscribe to <prefix>.> to get all.
func FlushAllSubject(prefix string) string { return prefix + ".all" }

// HeartbeatSubject is where the notifier that leads says it is alive:
// <prefix>.heartbeat, every few seconds while its term runs (payload
// {"kind":"heartbeat"}). An issuer that hears none for a while knows no
// one announces changes and stops caching. It is no invalidation.
func HeartbeatSubject(prefix string) string { return prefix + ".heartbeat" }

// UserIDFromNoticeSubject returns the user id a per-user notice subject
// names.
func UserIDFromNoticeSubject(prefix, subject string) (string, error) {
	tok, ok := strings.CutPrefix(subject, prefix+".user.")
	if !ok || strings.Contains(tok, ".") {
		return "", fmt.Errorf("subject %q is not a user notice subject under %q", subject, prefix)
	}
	return DecodeUserToken(tok)
}

// PrefixesOverlap reports whether "<a>.>" and "<b>.>" can match a common
// subject, i.e. one prefix is a token-prefix of the other.
func PrefixesOverlap(a, b string) bool {
	ta, tb := strings.Split(a, "."), strings.Split(b, ".")
	n := min(len(ta), len(tb))
	for i := 0; i < n; i++ {
		if ta[i] != tb[i] {
			return false
		}
	}
	return true
}

// SubjectMatches reports whether subject matches the NATS subject pattern
// (with '*' and '>' wildcards).
func SubjectMatches(pattern, subject string) bool {
	pt, st := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, p := range pt {
		if p == ">" {
			return len(st) > i
		}
		if i >= len(st) || (p != "*" && p != st[i]) {
			return false
		}
	}
	return len(pt) == len(st)
}

// AnyMatches reports whether subject matches one of patterns.
func AnyMatches(patterns []string, subject string) bool {
	for _, p := range patterns {
		if SubjectMatches(p, subject) {
			return true
		}
	}
	return false
}
