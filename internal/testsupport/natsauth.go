package testsupport

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// PasswordNATS is a nats-server process with JetStream whose one user logs
// in with a password that a test can change: the configuration file is
// rewritten and the server reloaded with SIGHUP, as an operator rotates a
// password. A process, not the in-process server: the in-process
// ReloadOptions races with the server's own reads of its options (the race
// detector reports it inside nats-server).
type PasswordNATS struct {
	URL  string // without credentials
	User string
	conf string
	port int
	dir  string
	cmd  *exec.Cmd
}

// StartNATSWithPassword starts the server for the test (the binary in
// NATS_SERVER_BIN, else the repository's bin/nats-server, which `make
// test` installs) and stops it at cleanup.
func StartNATSWithPassword(t testing.TB, user, password string) *PasswordNATS {
	t.Helper()
	bin := os.Getenv("NATS_SERVER_BIN")
	if bin == "" {
		_, file, _, _ := runtime.Caller(0)
		bin = filepath.Join(filepath.Dir(file), "..", "..", "bin", "nats-server")
	}
	if _, err := exec.LookPath(bin); err != nil {
		t.Fatalf("nats-server binary %s: %v (run `make test`, which installs it, or set NATS_SERVER_BIN)", bin, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	dir := t.TempDir()
	n := &PasswordNATS{URL: "nats://127.0.0.1:" + strconv.Itoa(port), User: user,
		conf: filepath.Join(dir, "nats.conf"), port: port, dir: dir}
	n.write(t, password)
	n.cmd = exec.Command(bin, "-c", n.conf)
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	t.Cleanup(func() { _ = n.cmd.Process.Kill(); _ = n.cmd.Wait() })
	for deadline := time.Now().Add(20 * time.Second); ; {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server did not listen on %d: %v", port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return n
}

func (n *PasswordNATS) write(t testing.TB, password string) {
	t.Helper()
	conf := fmt.Sprintf("host: 127.0.0.1\nport: %d\njetstream: {store_dir: %q}\nauthorization: {user: %q, password: %q}\n",
		n.port, filepath.Join(n.dir, "js"), n.User, password)
	if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
}

// SetPassword rewrites the configuration with password as its user's and
// reloads the server (SIGHUP): clients logged in with another are
// disconnected and refused from then on.
func (n *PasswordNATS) SetPassword(t testing.TB, password string) {
	t.Helper()
	n.write(t, password)
	if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("NATS reload: %v", err)
	}
}
