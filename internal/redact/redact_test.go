package redact

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestURIHidesSecrets(t *testing.T) {
	tests := []struct {
		name, in, want string
		secrets        []string // none of them may appear in the output
	}{
		{"no secret", "mongodb://localhost:27017/app", "mongodb://localhost:27017/app", nil},
		{"password", "mongodb://alice:s3cret@db1:27017/app?replicaSet=rs0", "mongodb://alice:xxxxx@db1:27017/app?replicaSet=rs0", []string{"s3cret"}},
		{"question mark in password, several hosts", "mongodb://user:pa?ss@h1,h2/?replicaSet=rs0", "mongodb://user:xxxxx@h1,h2/?replicaSet=rs0", []string{"pa?ss", "ss@"}},
		{"slash in password", "mongodb://user:pa/ss@h1:27017/app", "mongodb://user:xxxxx@h1:27017/app", []string{"pa/ss", "ss@"}},
		{"at sign in password", "mongodb://bob:p@ss@h1/", "mongodb://bob:xxxxx@h1/", []string{"p@ss"}},
		{"colon in password", "mongodb://bob:pa:ss@h1/", "mongodb://bob:xxxxx@h1/", []string{"pa:ss"}},
		{"password that looks like a host and a path", "mongodb://u:p@ss/x@h1/db", "mongodb://u:xxxxx@h1/db", []string{"ss/x"}},
		{"percent-encoded password", "mongodb://bob:p%40ss%2Fw%3Ard@h1:27017/", "mongodb://bob:xxxxx@h1:27017/", []string{"p%40ss", "%2Fw%3Ard"}},
		{"at sign in the query", "mongodb://bob:pw1@h1/?appName=a@b", "mongodb://bob:xxxxx@h1/?appName=a@b", []string{"pw1"}},
		{"at sign in the query, no path", "mongodb://user:pw@h1/?appName=a@b&w=1", "mongodb://user:xxxxx@h1/?appName=a@b&w=1", []string{"pw@"}},
		{"password that looks like a host and a query", "mongodb://u:p@x?y@h1/db", "mongodb://u:xxxxx@h1/db", []string{"x?y", "p@x"}},
		{"multi host with ports", "mongodb://bob:hunter2@h1:27017,h2:27017,h3:27018/?replicaSet=rs0", "mongodb://bob:xxxxx@h1:27017,h2:27017,h3:27018/?replicaSet=rs0", []string{"hunter2"}},
		{"IPv6 hosts", "mongodb://bob:hunter2@[::1]:27017,[fe80::1%25eth0]:27018/", "mongodb://bob:xxxxx@[::1]:27017,[fe80::1%25eth0]:27018/", []string{"hunter2"}},
		{"Unix socket", "mongodb://bob:hunter2@%2Ftmp%2Fmongodb-27017.sock/app", "mongodb://bob:xxxxx@%2Ftmp%2Fmongodb-27017.sock/app", []string{"hunter2"}},
		{"srv", "mongodb+srv://bob:hunter2@cluster.example.net/app?retryWrites=true", "mongodb+srv://bob:xxxxx@cluster.example.net/app?retryWrites=true", []string{"hunter2"}},
		{"srv with slash in password", "mongodb+srv://bob:hun/ter2@cluster.example.net/", "mongodb+srv://bob:xxxxx@cluster.example.net/", []string{"hun/ter2", "ter2"}},
		{"MongoDB user only (X.509)", "mongodb://CN=app@db1/?authMechanism=MONGODB-X509", "mongodb://CN=app@db1/?authMechanism=MONGODB-X509", nil},
		{"secret query", "mongodb://h/?tls=true&tlsCertificateKeyFilePassword=pw123", "mongodb://h/?tls=true&tlsCertificateKeyFilePassword=xxxxx", []string{"pw123"}},
		{"auth mechanism properties", "mongodb://u@h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:tok9", "", []string{"tok9"}},
		{"NATS token", "nats://s3cretToken@n1:4222", "nats://xxxxx@n1:4222", []string{"s3cretToken"}},
		{"NATS user and password", "tls://alice:pw%3F7@n1:4222", "tls://alice:xxxxx@n1:4222", []string{"pw%3F7"}},
		{"NATS websocket with slash in password", "wss://alice:pw/7@n1:443", "wss://alice:xxxxx@n1:443", []string{"pw/7"}},
		{"no host after the user info", "mongodb://bob:pw4@", Unparseable, []string{"pw4"}},
		{"space in the host list", "mongodb://bob:pw5@h 1/", Unparseable, []string{"pw5"}},
		{"bad port", "mongodb://bob:pw6@h1:port/", Unparseable, []string{"pw6"}},
		{"no scheme", "bob:pw@h", Unparseable, []string{"pw"}},
		{"bad scheme", "mon go://bob:pw7@h", Unparseable, []string{"pw7"}},
		{"empty", "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := URI(tt.in)
			if tt.want != "" && got != tt.want {
				t.Errorf("URI(%q) = %q, want %q", tt.in, got, tt.want)
			}
			for _, s := range tt.secrets {
				if strings.Contains(got, s) {
					t.Errorf("URI(%q) = %q still contains %q", tt.in, got, s)
				}
			}
			// Whatever quotes the URI is cleaned by its secrets.
			for _, text := range []string{
				"connect " + tt.in + ": refused",
				fmt.Sprintf("parse %q: invalid", tt.in),
				"user " + mustUnescape(tt.in) + " refused",
			} {
				cleaned := Text(text, Secrets(tt.in)...)
				for _, s := range tt.secrets {
					if strings.Contains(cleaned, s) {
						t.Errorf("Text(%q) = %q still contains %q", text, cleaned, s)
					}
				}
			}
		})
	}
}

func mustUnescape(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

func TestURIsRedactsEveryServer(t *testing.T) {
	tests := []struct {
		name, in, want string
		secrets        []string
	}{
		{"list", "nats://a:pw1@n1:4222, tls://tok2@n2:4222", "nats://a:xxxxx@n1:4222,tls://xxxxx@n2:4222", []string{"pw1", "tok2"}},
		{"servers without scheme", "u:pw3@n3:4222,n4", "u:xxxxx@n3:4222,n4", []string{"pw3"}},
		{"comma in a password", "nats://u:p,w9@h1:4222", "", []string{"p,w9", "w9"}},
		{"one bad entry", "nats://n1:4222,nats://u:pw 8@h 2", "nats://n1:4222," + Unparseable, []string{"pw 8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := URIs(tt.in)
			if tt.want != "" && got != tt.want {
				t.Errorf("URIs(%q) = %q, want %q", tt.in, got, tt.want)
			}
			cleaned := Text("connect to "+tt.in, SecretsOfURIs(tt.in)...)
			for _, s := range tt.secrets {
				if strings.Contains(got, s) || strings.Contains(cleaned, s) {
					t.Errorf("URIs(%q) = %q, text %q: still contains %q", tt.in, got, cleaned, s)
				}
			}
		})
	}
}

func TestErrKeepsTheChainAndCutsQuotedFragments(t *testing.T) {
	sentinel := errors.New("sentinel")
	_, perr := url.PathUnescape("pa%zzss")
	err := Err(fmt.Errorf("invalid password: %w: %w", perr, sentinel), "pa%zzss")
	if !errors.Is(err, sentinel) {
		t.Fatal("Err broke the error chain")
	}
	if strings.Contains(err.Error(), "%zz") {
		t.Fatalf("Err left a fragment of the password: %q", err)
	}
	if Err(nil) != nil {
		t.Fatal("Err(nil) != nil")
	}
}

// Go's URL parser quotes the URL and fragments of it; a NATS client error
// carries them whole.
func TestErrCutsWhatTheURLParserQuotes(t *testing.T) {
	for _, raw := range []string{
		"nats://app:na?ts9w@127.0.0.1:1",
		"nats://app:na/ts9w@127.0.0.1:1",
		"nats://app:pa ss9w@[bad:4222",
		"nats://app:p%zzs9w@h:4222",
	} {
		_, perr := url.Parse(raw)
		if perr == nil {
			t.Fatalf("url.Parse(%q) succeeded", raw)
		}
		got := Err(fmt.Errorf("connect to NATS at %s: %w", URIs(raw), perr), SecretsOfURIs(raw)...).Error()
		for _, frag := range []string{"s9w", `":na"`, "%zz", "pa ss"} {
			if strings.Contains(got, frag) {
				t.Errorf("%q: error %q carries %q", raw, got, frag)
			}
		}
	}
}

// TestTextMasksShortSecretsOnlyWhereAURIHoldsThem: a short secret is not
// masked wherever its characters happen to occur (a password "1" would cut
// every 1 of an address, and "admin" next to authSource=admin would say
// what the password is); it is masked where a URI holds it. A secret of
// MinSecretLength or more is masked everywhere.
func TestTextMasksShortSecretsOnlyWhereAURIHoldsThem(t *testing.T) {
	tests := []struct {
		name, uri, text, want string
	}{
		{"one-character password", "mongodb://u:1@127.0.0.1:27017/",
			"connect mongodb://u:1@127.0.0.1:27017/: server 127.0.0.1:27017 refused",
			"connect mongodb://u:xxxxx@127.0.0.1:27017/: server 127.0.0.1:27017 refused"},
		{"password admin with authSource=admin", "mongodb://root:admin@h1/?authSource=admin",
			"auth error on mongodb://root:admin@h1/?authSource=admin (db admin)",
			"auth error on mongodb://root:xxxxx@h1/?authSource=admin (db admin)"},
		{"short secret query parameter", "mongodb://h1/?tlsCertificateKeyFilePassword=abc&authSource=abc",
			"open mongodb://h1/?tlsCertificateKeyFilePassword=abc&authSource=abc",
			"open mongodb://h1/?tlsCertificateKeyFilePassword=xxxxx&authSource=abc"},
		{"long secret anywhere", "mongodb://u:correct-horse@h1/",
			"server said: bad password correct-horse",
			"server said: bad password xxxxx"},
		{"at sign in the query", "mongodb://user:pw@h1/?appName=a@b",
			"dial mongodb://user:pw@h1/?appName=a@b: no route to h1",
			"dial mongodb://user:xxxxx@h1/?appName=a@b: no route to h1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Text(tt.text, Secrets(tt.uri)...); got != tt.want {
				t.Errorf("Text(%q) = %q, want %q", tt.text, got, tt.want)
			}
		})
	}
}
