package chaos

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

const deployNATSConf = "../../deploy/nats/nats.conf"

func testAuth(t *testing.T) *natsAuth {
	t.Helper()
	a, err := loadNATSAuth(deployNATSConf)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestChaosNATSUsersAreTheDeployFile's: a node of the run (a cluster node
// here) has exactly deploy/nats/nats.conf's users with their permissions,
// plus the harness's own (no permissions block: all of the account), and
// each logs in with the password the run gives it.
func TestChaosNATSUsersAreTheDeployFiles(t *testing.T) {
	a := testAuth(t)
	want := testsupport.NATSConfUsers(t, deployNATSConf)
	path := filepath.Join(t.TempDir(), "node.conf")
	if err := os.WriteFile(path, []byte(a.serverConf("/tmp/store", "127.0.0.1:6222", []string{"127.0.0.1:6222", "127.0.0.1:6223"})), 0o600); err != nil {
		t.Fatal(err)
	}
	got := testsupport.NATSConfUsers(t, path)
	if perms, ok := got[harnessUser]; !ok || perms != nil {
		t.Errorf("harness user %s: present %v, permissions %+v; want present with none", harnessUser, ok, perms)
	}
	delete(got, harnessUser)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the run's users differ from %s's:\n got %v\nwant %v", deployNATSConf, got, want)
	}
	for _, kv := range a.serverEnv() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range opts.Users {
		if u.Password != a.password(u.Username) || u.Password == "" {
			t.Errorf("user %s: the server's password is not the one its clients are given", u.Username)
		}
	}
	if opts.StoreDir != "/tmp/store" {
		t.Errorf("store_dir %q, want the node's", opts.StoreDir)
	}
	if len(opts.Users) != len(want)+1 {
		t.Errorf("%d users, want %d", len(opts.Users), len(want)+1)
	}
	if opts.Cluster.Username != routeUser || opts.Cluster.Password != a.passwords[routePasswordVar] || len(opts.Routes) != 2 {
		t.Errorf("cluster: user %q, %d routes; want %s and 2", opts.Cluster.Username, len(opts.Routes), routeUser)
	}
	for _, r := range opts.Routes {
		if p, _ := r.User.Password(); r.User.Username() != routeUser || p != a.passwords[routePasswordVar] {
			t.Errorf("route %s does not log in as %s", r.Host, routeUser)
		}
	}
}

// TestChaosNATSServerRefusesWhatTheFileDoes: the run's nats-server process
// admits each role with its password and refuses what nats.conf refuses
// (a producer reading notices), and its log names the violation, which
// is how verifyNoViolations sees it.
func TestChaosNATSServerRefusesWhatTheFileDoes(t *testing.T) {
	dir := t.TempDir()
	a := testAuth(t)
	n, err := newNATSCluster(natsServerBin(t), dir, 1, a)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.startAll(ctx); err != nil {
		t.Fatal(err)
	}
	defer n.stop(5 * time.Second)
	if _, err := nats.Connect(n.url, nats.UserInfo(producerUser, "wrong"), nats.NoReconnect()); err == nil {
		t.Fatal("a wrong password was admitted")
	}
	nc, err := a.connect(n.url, producerUser, nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish("customdata.invalidated.x", nil); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`authentication error - User "auth-service"`, `Publish Violation - Subject "customdata.invalidated.x"`} {
		waitViolation(t, n, want)
	}
}

func waitViolation(t *testing.T, n *natsCluster, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, v := range n.violations() {
			if strings.Contains(v, want) {
				return
			}
		}
	}
	t.Fatalf("no refusal %q in the server's log; got %q", want, n.violations())
}
