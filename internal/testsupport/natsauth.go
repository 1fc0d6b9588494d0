package testsupport

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// PasswordNATS is an in-process NATS server with JetStream whose one user
// logs in with a password that a test can change with a configuration
// reload (a rotation, as `kill -HUP` after editing the file does).
type PasswordNATS struct {
	Server *server.Server
	URL    string // without credentials
	User   string
	opts   server.Options
}

// StartNATSWithPassword starts the server for the test and shuts it down
// at cleanup.
func StartNATSWithPassword(t testing.TB, user, password string) *PasswordNATS {
	t.Helper()
	opts := server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(), Username: user, Password: password}
	start := opts
	s, err := server.NewServer(&start)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	opts.Port = s.Addr().(*net.TCPAddr).Port // a reload keeps the port
	return &PasswordNATS{Server: s, URL: s.ClientURL(), User: user, opts: opts}
}

// SetPassword reloads the server with password as its user's: clients
// logged in with another are disconnected and refused from then on.
func (n *PasswordNATS) SetPassword(t testing.TB, password string) {
	t.Helper()
	n.opts.Password = password
	next := n.opts
	if err := n.Server.ReloadOptions(&next); err != nil {
		t.Fatalf("NATS reload: %v", err)
	}
}
