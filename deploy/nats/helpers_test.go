package natsdeploy_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// A role is a user of nats.conf and the variable holding its password.
type role struct {
	user, passwordVar string
}

var (
	authService     = role{"auth-service", "NATS_AUTH_SERVICE_PASSWORD"}
	workerRole      = role{"customdata-worker", "NATS_WORKER_PASSWORD"}
	issuerRole      = role{"issuer", "NATS_ISSUER_PASSWORD"}
	referenceIssuer = role{"reference-issuer", "NATS_REFERENCE_ISSUER_PASSWORD"}
	opsRole         = role{"customdata-ops", "NATS_OPS_PASSWORD"}
	bridgeRole      = role{"customdata-bridge", "NATS_BRIDGE_PASSWORD"}
	roles           = []role{authService, workerRole, issuerRole, referenceIssuer, opsRole, bridgeRole}
)

// password is the test's password of r: distinct per role, so that one
// role's password opening another's user would show.
func (r role) password() string { return "pw-" + r.user + "-0123456789" }

// inboxPrefix is the prefix of r's reply subjects, the only subjects
// nats.conf lets it subscribe to (under it).
func (r role) inboxPrefix() string { return "_INBOX_" + r.user }

// loadConfig reads nats.conf as nats-server does, with every password
// variable set.
func loadConfig(t *testing.T) *server.Options {
	t.Helper()
	for _, r := range roles {
		t.Setenv(r.passwordVar, r.password())
	}
	opts, err := server.ProcessConfigFile("nats.conf")
	if err != nil {
		t.Fatalf("nats.conf: %v", err)
	}
	return opts
}

// startServer runs a nats-server on nats.conf, with only the listen
// address and the store directory replaced, and returns its URL.
func startServer(t *testing.T) string {
	t.Helper()
	opts := loadConfig(t)
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.StoreDir = t.TempDir()
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server on nats.conf: %v", err)
	}
	go s.Start()
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server on nats.conf not ready within 10s")
	}
	return s.ClientURL()
}

// conn is a client connection of one role, with the asynchronous errors
// the server sent it (permission violations arrive that way).
type conn struct {
	nc *nats.Conn
	js jetstream.JetStream

	mu   sync.Mutex
	errs []error
}

// connect connects as r, with r's inbox prefix, as its binary or a client
// set up as deploy/nats/README.md says does.
func connect(t *testing.T, url string, r role) *conn {
	t.Helper()
	return connectWith(t, url, r, nats.CustomInboxPrefix(r.inboxPrefix()))
}

// connectWith connects as r with opts (connect adds r's inbox prefix).
func connectWith(t *testing.T, url string, r role, opts ...nats.Option) *conn {
	t.Helper()
	c := &conn{}
	nc, err := nats.Connect(url, append(opts, nats.UserInfo(r.user, r.password()), nats.Name(r.user),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			c.errs = append(c.errs, err)
			c.mu.Unlock()
		}))...)
	if err != nil {
		t.Fatalf("connect as %s: %v", r.user, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	c.nc, c.js = nc, js
	return c
}

// violations returns the permission violations received so far.
func (c *conn) violations() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, err := range c.errs {
		if errors.Is(err, nats.ErrPermissionViolation) {
			out = append(out, err.Error())
		}
	}
	return out
}

// waitRefused waits for the server's permission violation of op ("Publish"
// or "Subscription") on subject, exactly as the server names them.
func (c *conn) waitRefused(t *testing.T, op, subject string) {
	t.Helper()
	want := op + ` to "` + subject + `"`
	for deadline := time.Now().Add(testsupport.Wait); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, v := range c.violations() {
			if strings.HasSuffix(v, want) {
				return
			}
		}
	}
	t.Fatalf("no permissions violation for %s within %s; got %v", want, testsupport.Wait, c.violations())
}

// noViolations fails the test if c was refused anything.
func (c *conn) noViolations(t *testing.T, who string) {
	t.Helper()
	if v := c.violations(); len(v) > 0 {
		t.Errorf("%s was refused what its job needs: %v", who, v)
	}
}
