package tlsfiles

import (
	"crypto/tls"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

func TestServerConfig(t *testing.T) {
	p := testsupport.NewPKI(t, "srv")
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")

	c, err := ServerConfig(p.ServerCert, p.ServerKey, "")
	if err != nil || c.MinVersion != tls.VersionTLS12 || c.ClientAuth != tls.NoClientCert || len(c.Certificates) != 1 {
		t.Fatalf("without a client CA: %+v, %v", c, err)
	}
	c, err = ServerConfig(p.ServerCert, p.ServerKey, p.CAFile)
	if err != nil || c.ClientAuth != tls.VerifyClientCertIfGiven || c.ClientCAs == nil {
		t.Fatalf("with a client CA: %+v, %v", c, err)
	}
	for _, tc := range []struct {
		name                string
		cert, key, clientCA string
		want                error
		path                string
	}{
		{"missing certificate", missing, p.ServerKey, "", fs.ErrNotExist, missing},
		{"key of another certificate", p.ServerCert, p.ClientKey, "", nil, p.ClientKey},
		{"missing client CA", p.ServerCert, p.ServerKey, missing, fs.ErrNotExist, missing},
		{"client CA not PEM", p.ServerCert, p.ServerKey, notPEM, ErrNoCertificate, notPEM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ServerConfig(tc.cert, tc.key, tc.clientCA)
			if err == nil || !strings.Contains(err.Error(), tc.path) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("error %v, want one naming %s (%v)", err, tc.path, tc.want)
			}
		})
	}
}
