package natsconn_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

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

// pki is a private CA with a server certificate for 127.0.0.1 and a client
// certificate, as PEM files.
type pki struct {
	CAFile, ServerCert, ServerKey, ClientCert, ClientKey string
}

func newPKI(t *testing.T, name string) pki {
	t.Helper()
	caKey, caCert, caPEM := newCert(t, name+" CA", nil, nil, func(c *x509.Certificate) {
		c.IsCA, c.BasicConstraintsValid, c.KeyUsage = true, true, x509.KeyUsageCertSign
	})
	var p pki
	p.CAFile = writeFile(t, name+"-ca.pem", caPEM)
	p.ServerKey, p.ServerCert = issue(t, name+"-server", caKey, caCert, func(c *x509.Certificate) {
		c.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	p.ClientKey, p.ClientCert = issue(t, name+"-client", caKey, caCert, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
	return p
}

func issue(t *testing.T, name string, caKey *ecdsa.PrivateKey, ca *x509.Certificate, shape func(*x509.Certificate)) (keyFile, certFile string) {
	t.Helper()
	key, _, certPEM := newCert(t, name, caKey, ca, shape)
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, name+"-key.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})),
		writeFile(t, name+"-cert.pem", certPEM)
}

// newCert makes a key and a certificate signed by parent (self-signed when
// parent is nil).
func newCert(t *testing.T, cn string, parentKey *ecdsa.PrivateKey, parent *x509.Certificate, shape func(*x509.Certificate)) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	shape(tmpl)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

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
