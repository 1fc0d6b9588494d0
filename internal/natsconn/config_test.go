package natsconn_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/internal/natsconn"
)

func TestValidateRefusesAmbiguousSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  natsconn.Config
		want string
	}{
		{"no URL", natsconn.Config{}, "NATS URL is empty"},
		{"password without user", natsconn.Config{URL: "nats://h:4222", Password: "pw-9-secret"}, "a password needs a user"},
		{"two methods", natsconn.Config{URL: "nats://h:4222", User: "app", Token: "t"}, "set only one of"},
		{"cert without key", natsconn.Config{URL: "nats://h:4222", TLSCertFile: "c.pem"}, "needs both cert and key"},
		{"inbox prefix with a wildcard", natsconn.Config{URL: "nats://h:4222", InboxPrefix: "_INBOX_app.>"}, `NATS inbox prefix "_INBOX_app.>"`},
		{"inbox prefix ending in a dot", natsconn.Config{URL: "nats://h:4222", InboxPrefix: "_INBOX_app."}, "not a subject prefix"},
		{"inbox prefix with an empty token", natsconn.Config{URL: "nats://h:4222", InboxPrefix: "_INBOX..app"}, "not a subject prefix"},
		{"inbox prefix with a space", natsconn.Config{URL: "nats://h:4222", InboxPrefix: "_INBOX app"}, "not a subject prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "pw-9-secret") {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
}

// A configured file that is missing or is not what it should be stops the
// start: the error names the path, never what the file holds.
func TestUnusableFilesAreNamed(t *testing.T) {
	const content = "not-a-key-9-secret-content"
	junk := writeFile(t, "junk", []byte(content))
	missing := filepath.Join(t.TempDir(), "missing.pem")
	p := newPKI(t, "files")
	for _, tc := range []struct {
		name string
		cfg  natsconn.Config
		path string
	}{
		{"missing nkey seed", natsconn.Config{NKeySeedFile: missing}, missing},
		{"junk nkey seed", natsconn.Config{NKeySeedFile: junk}, junk},
		{"missing creds", natsconn.Config{CredsFile: missing}, missing},
		{"junk creds", natsconn.Config{CredsFile: junk}, junk},
		{"missing CA", natsconn.Config{TLSCAFile: missing}, missing},
		{"junk CA", natsconn.Config{TLSCAFile: junk}, junk},
		{"a directory as CA", natsconn.Config{TLSCAFile: t.TempDir()}, ""},
		{"missing client key", natsconn.Config{TLSCertFile: p.ClientCert, TLSKeyFile: missing}, missing},
		{"junk client key", natsconn.Config{TLSCertFile: p.ClientCert, TLSKeyFile: junk}, junk},
		{"key of another certificate", natsconn.Config{TLSCertFile: p.ClientCert, TLSKeyFile: p.ServerKey}, p.ServerKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.URL = "nats://127.0.0.1:1"
			for _, step := range []struct {
				name string
				err  error
			}{{"Validate", tc.cfg.Validate()}, {"Connect", connectErr(tc.cfg)}} {
				err := step.err
				switch {
				case err == nil:
					t.Fatalf("%s accepted the file", step.name)
				case !errors.Is(err, natsconn.ErrUnusableFile) || !natsconn.Refused(err):
					t.Errorf("%s: %v is not an unusable file", step.name, err)
				case !strings.Contains(err.Error(), tc.path):
					t.Errorf("%s: %v does not name %s", step.name, err, tc.path)
				case strings.Contains(err.Error(), content):
					t.Errorf("%s: %v shows the file's content", step.name, err)
				}
			}
		})
	}
}

func connectErr(cfg natsconn.Config) error {
	nc, err := natsconn.Connect(cfg, zerolog.Nop())
	if err == nil {
		nc.Close()
	}
	return err
}

// Whatever the client quotes of a server URL or the credentials, no
// password or token reaches the error text (the startup retry logs it).
func TestConnectErrorsCarryNoSecrets(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  natsconn.Config
		want string // the secret that must not appear
	}{
		{"URL the client cannot parse", natsconn.Config{URL: "nats://app:pa ss9@[bad:4222"}, "ss9"},
		{"token in a list, nothing listening", natsconn.Config{URL: "nats://127.0.0.1:1,nats://tok9secret@127.0.0.1:2"}, "tok9secret"},
		{"configured password", natsconn.Config{URL: "nats://127.0.0.1:1", User: "app", Password: "pw9secret"}, "pw9secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := connectErr(tc.cfg)
			if err == nil {
				t.Fatal("connect succeeded")
			}
			if strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error text carries the secret %q: %v", tc.want, err)
			}
		})
	}
}
