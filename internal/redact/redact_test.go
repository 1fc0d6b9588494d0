package redact

import (
	"strings"
	"testing"
)

func TestURIHidesSecrets(t *testing.T) {
	tests := []struct {
		name, in, want string
		mustNotContain string
	}{
		{"no secret", "mongodb://localhost:27017/app", "mongodb://localhost:27017/app", ""},
		{"password", "mongodb://alice:s3cret@db1:27017/app?replicaSet=rs0", "mongodb://alice:xxxxx@db1:27017/app?replicaSet=rs0", "s3cret"},
		{"NATS token", "nats://s3cretToken@n1:4222", "nats://xxxxx@n1:4222", "s3cretToken"},
		{"MongoDB user only (X.509)", "mongodb://CN=app@db1/?authMechanism=MONGODB-X509", "mongodb://CN=app@db1/?authMechanism=MONGODB-X509", ""},
		{"multi host", "mongodb://bob:hunter2@h1:27017,h2:27017/?replicaSet=rs0", "mongodb://bob:xxxxx@h1:27017,h2:27017/?replicaSet=rs0", "hunter2"},
		{"at sign in password", "mongodb://bob:p@ss@h1/", "mongodb://bob:xxxxx@h1/", "p@ss"},
		{"srv", "mongodb+srv://bob:hunter2@cluster.example.net/app", "mongodb+srv://bob:xxxxx@cluster.example.net/app", "hunter2"},
		{"secret query", "mongodb://h/?tls=true&tlsCertificateKeyFilePassword=pw123", "", "pw123"},
		{"no scheme", "bob:pw@h", "(unparseable URI redacted)", "pw"},
		{"empty", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := URI(tt.in)
			if tt.want != "" && got != tt.want {
				t.Errorf("URI(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if tt.mustNotContain != "" && strings.Contains(got, tt.mustNotContain) {
				t.Errorf("URI(%q) = %q still contains the secret", tt.in, got)
			}
		})
	}
}

func TestURIsRedactsEveryServer(t *testing.T) {
	got := URIs("nats://a:pw1@n1:4222, tls://tok2@n2:4222")
	if strings.Contains(got, "pw1") || strings.Contains(got, "tok2") {
		t.Fatalf("URIs left a password: %q", got)
	}
}
