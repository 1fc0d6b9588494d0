package events

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

var tokenAlphabet = regexp.MustCompile(`^[A-Za-z0-9_-]*$`)

func TestAuthSubject(t *testing.T) {
	want := []string{"auth.events.login", "auth.events.create", "auth.events.delete"}
	if got := AuthSubjects(DefaultAuthPrefix); !slices.Equal(got, want) {
		t.Fatalf("AuthSubjects = %v, want %v", got, want)
	}
	for i, op := range Operations() {
		if got := AuthSubject(DefaultAuthPrefix, op); got != want[i] {
			t.Errorf("AuthSubject(%s) = %q, want %q", op, got, want[i])
		}
	}
}

func TestOperationForSubject(t *testing.T) {
	tests := []struct {
		prefix, subject string
		want            Operation
		ok              bool
	}{
		{"auth.events", "auth.events.login", OperationLogin, true},
		{"auth.events", "auth.events.create", OperationCreate, true},
		{"auth.events", "auth.events.delete", OperationDelete, true},
		{"a.b.c", "a.b.c.delete", OperationDelete, true},
		{"auth.events", "auth.events.LOGIN", "", false},
		{"auth.events", "auth.events.Login", "", false},
		{"auth.events", "auth.events.logout", "", false},
		{"auth.events", "auth.events.login.extra", "", false},
		{"auth.events", "auth.events", "", false},
		{"auth.events", "auth.events.", "", false},
		{"auth.events", "auth.eventslogin", "", false},
		{"auth.events", "other.events.login", "", false},
		{"auth.events", "x.auth.events.login", "", false},
		{"auth", "auth.events.login", "", false},
	}
	for _, tt := range tests {
		op, ok := OperationForSubject(tt.prefix, tt.subject)
		if ok != tt.ok || (ok && op != tt.want) {
			t.Errorf("OperationForSubject(%q, %q) = %q, %v; want %q, %v", tt.prefix, tt.subject, op, ok, tt.want, tt.ok)
		}
	}
	// Round trip for every operation under several prefixes.
	for _, prefix := range []string{DefaultAuthPrefix, "x", "tenant-1.auth"} {
		for _, op := range Operations() {
			if got, ok := OperationForSubject(prefix, AuthSubject(prefix, op)); !ok || got != op {
				t.Errorf("round trip %s under %q = %q, %v", op, prefix, got, ok)
			}
		}
	}
}

func TestValidatePrefix(t *testing.T) {
	for _, p := range []string{"auth.events", "customdata.invalidated", "a", "tenant-1.auth_x"} {
		if err := ValidatePrefix(p); err != nil {
			t.Errorf("ValidatePrefix(%q): %v", p, err)
		}
	}
	for _, p := range []string{"", ".", "a.", ".a", "a..b", "a.*", "*", "a.>", ">", "a.b*", "a b", "a.\tb", "a\r", "a\nb"} {
		if err := ValidatePrefix(p); err == nil {
			t.Errorf("ValidatePrefix(%q) accepted", p)
		}
	}
}

// trickyIDs are user ids that are valid but cannot appear raw in a subject.
var trickyIDs = []string{
	"a", "u1", "a.b", "a..b", ".", "*", ">", "a.*.>", "a b", " ", "user@example.com",
	"ü", "ユーザー", "😀", "a/b+c=", "==", "all", "user", "doc", "_-", "QQ",
	"\u00a0", strings.Repeat("x", MaxUserIDBytes), strings.Repeat("é", MaxUserIDBytes/2),
}

func TestUserTokenRoundTrip(t *testing.T) {
	const prefix = DefaultNoticePrefix
	for _, id := range append([]string{""}, trickyIDs...) {
		tok := EncodeUserToken(id)
		if !tokenAlphabet.MatchString(tok) {
			t.Errorf("token %q of %q has characters outside [A-Za-z0-9_-]", tok, id)
		}
		got, err := DecodeUserToken(tok)
		if err != nil || got != id {
			t.Errorf("DecodeUserToken(EncodeUserToken(%q)) = %q, %v", id, got, err)
		}
		if id == "" {
			continue // not a valid user id; no subject for it
		}
		subject := UserNoticeSubject(prefix, id)
		if want := prefix + ".user." + tok; subject != want {
			t.Errorf("UserNoticeSubject(%q) = %q, want %q", id, subject, want)
		}
		if err := ValidatePrefix(subject); err != nil {
			t.Errorf("subject %q for %q is not a valid literal subject: %v", subject, id, err)
		}
		if got, err := UserIDFromNoticeSubject(prefix, subject); err != nil || got != id {
			t.Errorf("UserIDFromNoticeSubject(%q) = %q, %v; want %q", subject, got, err, id)
		}
		doc := DocumentNoticeSubject(prefix, id)
		if want := prefix + ".doc." + tok; doc != want {
			t.Errorf("DocumentNoticeSubject(%q) = %q, want %q", id, doc, want)
		}
	}
}

func TestDecodeUserTokenRejects(t *testing.T) {
	for _, tok := range []string{
		"QR",    // non-zero padding bits: would alias "QQ" ("A")
		"QUJ",   // likewise aliases "QUI" ("AB")
		"Q\nQ",  // embedded newline, skipped by the base64 decoder
		"QQ\r",  // trailing carriage return
		"QQ==",  // padding is not part of the alphabet
		"Q",     // impossible length
		"a+b/",  // standard, not URL, alphabet
		"QQ.QQ", // two tokens
		"_w",    // decodes to 0xff: not UTF-8
		"!!",
	} {
		if id, err := DecodeUserToken(tok); err == nil {
			t.Errorf("DecodeUserToken(%q) = %q, want an error", tok, id)
		}
	}
}

func TestUserIDFromNoticeSubjectRejects(t *testing.T) {
	const prefix = DefaultNoticePrefix
	tok := EncodeUserToken("u1")
	for _, subject := range []string{
		FlushAllSubject(prefix),
		DocumentNoticeSubject(prefix, "u1"),
		"other.user." + tok,
		prefix + ".user." + tok + ".x",
		prefix + ".user." + tok + "=",
		prefix + ".users." + tok,
		prefix + "user." + tok,
		prefix,
	} {
		if id, err := UserIDFromNoticeSubject(prefix, subject); err == nil {
			t.Errorf("UserIDFromNoticeSubject(%q) = %q, want an error", subject, id)
		}
	}
}

func TestFlushAllSubjectIsDistinct(t *testing.T) {
	for _, prefix := range []string{DefaultNoticePrefix, "n", "a.b.c"} {
		all := FlushAllSubject(prefix)
		if all != prefix+".all" {
			t.Errorf("FlushAllSubject(%q) = %q", prefix, all)
		}
		if err := ValidatePrefix(all); err != nil {
			t.Errorf("flush-all subject %q invalid: %v", all, err)
		}
		ids := append([]string{}, trickyIDs...)
		// Ids whose tokens spell words a subscriber might confuse.
		for _, tok := range []string{"all", "YWxs", "user", "dXNlcg"} {
			if id, err := DecodeUserToken(tok); err == nil {
				ids = append(ids, id)
			}
		}
		for _, id := range ids {
			for _, s := range []string{UserNoticeSubject(prefix, id), DocumentNoticeSubject(prefix, id)} {
				if s == all {
					t.Errorf("subject for %q equals the flush-all subject", id)
				}
				// One token more than flush-all, so no single-token
				// wildcard can match both.
				if strings.Count(s, ".") != strings.Count(all, ".")+1 {
					t.Errorf("subject %q for %q has the wrong number of tokens", s, id)
				}
			}
		}
	}
}

func TestSubjectMatching(t *testing.T) {
	cases := []struct {
		pattern, subject string
		want             bool
	}{
		{"auth.events.>", "auth.events.login", true},
		{"auth.events.>", "auth.events", false},
		{"auth.*.login", "auth.events.login", true},
		{"auth.events.login", "auth.events.login", true},
		{"auth.events.login", "auth.events.create", false},
		{"auth.events.*", "auth.events.login.x", false},
		{">", "anything.at.all", true},
	}
	for _, tc := range cases {
		if got := SubjectMatches(tc.pattern, tc.subject); got != tc.want {
			t.Errorf("SubjectMatches(%q, %q) = %v, want %v", tc.pattern, tc.subject, got, tc.want)
		}
	}
	if !PrefixesOverlap("auth.events", "auth.events.x") || PrefixesOverlap("auth.events", "auth.deadletter") {
		t.Error("PrefixesOverlap")
	}
}
