package natsconn_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// startServer runs an in-process NATS server configured by opts (auth,
// TLS) on a free loopback port until the test ends, and returns its URL.
func startServer(t *testing.T, opts *server.Options) string {
	t.Helper()
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	return s.ClientURL()
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// pki is the private CA the tests share (testsupport.NewPKI).
type pki = testsupport.PKI

func newPKI(t *testing.T, name string) pki { return testsupport.NewPKI(t, name) }

// serverTLS is the server side of p; verify requires client certificates
// signed by p's CA.
func serverTLS(t *testing.T, p pki, verify bool) *tls.Config {
	t.Helper()
	c, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: p.ServerCert, KeyFile: p.ServerKey, CaFile: p.CAFile, Verify: verify})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// operator is a decentralised-auth setup: an operator trusting one account
// through a memory resolver.
type operator struct {
	claims  *jwt.OperatorClaims
	key     nkeys.KeyPair
	account nkeys.KeyPair
	accJWT  string
}

func newOperator(t *testing.T) *operator {
	t.Helper()
	op := &operator{key: mustKey(t, nkeys.CreateOperator), account: mustKey(t, nkeys.CreateAccount)}
	opPub, _ := op.key.PublicKey()
	op.claims = jwt.NewOperatorClaims(opPub)
	if _, err := op.claims.Encode(op.key); err != nil { // fills the issuer
		t.Fatal(err)
	}
	accPub, _ := op.account.PublicKey()
	ac := jwt.NewAccountClaims(accPub)
	var err error
	if op.accJWT, err = ac.Encode(op.key); err != nil {
		t.Fatal(err)
	}
	return op
}

// serverOptions trust the operator and know its account.
func (op *operator) serverOptions(t *testing.T) *server.Options {
	t.Helper()
	res := &server.MemAccResolver{}
	accPub, _ := op.account.PublicKey()
	if err := res.Store(accPub, op.accJWT); err != nil {
		t.Fatal(err)
	}
	return &server.Options{TrustedOperators: []*jwt.OperatorClaims{op.claims}, AccountResolver: res}
}

// creds writes a .creds file of a new user signed by account (an account
// of op or not), expiring at expires unless zero.
func creds(t *testing.T, account nkeys.KeyPair, expires time.Time) string {
	t.Helper()
	user := mustKey(t, nkeys.CreateUser)
	pub, _ := user.PublicKey()
	uc := jwt.NewUserClaims(pub)
	if !expires.IsZero() {
		uc.Expires = expires.Unix()
	}
	token, err := uc.Encode(account)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	b, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "user.creds", b)
}

func mustKey(t *testing.T, create func() (nkeys.KeyPair, error)) nkeys.KeyPair {
	t.Helper()
	kp, err := create()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}
