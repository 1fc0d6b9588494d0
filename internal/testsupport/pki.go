package testsupport

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
)

// PKI is a private CA with a server certificate for 127.0.0.1 and a client
// certificate, as PEM files in a temporary directory.
type PKI struct {
	CAFile                string
	ServerCert, ServerKey string
	ClientCert, ClientKey string
	ClientCertKey         string // client certificate and key in one file (MongoDB's tlsCertificateKeyFile)
	caCert                *x509.Certificate
	caKey                 *ecdsa.PrivateKey
}

// NewPKI makes a CA named name and the two certificates it signs.
func NewPKI(t testing.TB, name string) PKI {
	t.Helper()
	dir := t.TempDir()
	caKey, caCert, caPEM := newCert(t, name+" CA", nil, nil, func(c *x509.Certificate) {
		c.IsCA, c.BasicConstraintsValid, c.KeyUsage = true, true, x509.KeyUsageCertSign
	})
	p := PKI{caCert: caCert, caKey: caKey, CAFile: writePEM(t, dir, name+"-ca.pem", caPEM)}
	var keyPEM, certPEM []byte
	keyPEM, certPEM = issue(t, name+"-server", caKey, caCert, func(c *x509.Certificate) {
		c.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	p.ServerKey, p.ServerCert = writePEM(t, dir, name+"-server-key.pem", keyPEM), writePEM(t, dir, name+"-server-cert.pem", certPEM)
	keyPEM, certPEM = issue(t, name+"-client", caKey, caCert, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
	p.ClientKey, p.ClientCert = writePEM(t, dir, name+"-client-key.pem", keyPEM), writePEM(t, dir, name+"-client-cert.pem", certPEM)
	p.ClientCertKey = writePEM(t, dir, name+"-client.pem", append(certPEM, keyPEM...))
	return p
}

// IssueClient makes another client certificate of p's CA, with subject
// common name cn and DNS names dnsNames, and returns its files.
func (p PKI) IssueClient(t testing.TB, cn string, dnsNames ...string) (certFile, keyFile string) {
	t.Helper()
	keyPEM, certPEM := issue(t, cn, p.caKey, p.caCert, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		c.DNSNames = dnsNames
	})
	dir := t.TempDir()
	return writePEM(t, dir, "client-cert.pem", certPEM), writePEM(t, dir, "client-key.pem", keyPEM)
}

// ServerTLS is the server side of p; requireClientCert asks for and
// verifies a client certificate signed by p's CA.
func (p PKI) ServerTLS(t testing.TB, requireClientCert bool) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(p.ServerCert, p.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if requireClientCert {
		pool := x509.NewCertPool()
		pool.AddCert(p.caCert)
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c
}

func writePEM(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue makes a key and a certificate signed by the CA, as PEM (the key
// in PKCS #8, which every client reads).
func issue(t testing.TB, name string, caKey *ecdsa.PrivateKey, ca *x509.Certificate, shape func(*x509.Certificate)) (keyPEM, certPEM []byte) {
	t.Helper()
	key, _, certPEM := newCert(t, name, caKey, ca, shape)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), certPEM
}

// newCert makes a key and a certificate signed by parent (self-signed when
// parent is nil).
func newCert(t testing.TB, cn string, parentKey *ecdsa.PrivateKey, parent *x509.Certificate, shape func(*x509.Certificate)) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
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
