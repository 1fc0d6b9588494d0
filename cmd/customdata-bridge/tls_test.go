package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// The TLS settings go together as documented, and a file that cannot be
// used stops the start naming its setting and path.
func TestTLSSettings(t *testing.T) {
	pki := testsupport.NewPKI(t, "bridge")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		name string
		env  map[string]string
		err  string // "" for valid
	}{
		{name: "HTTPS with tokens", env: map[string]string{"API_TOKENS": "t", "TLS_CERT_FILE": pki.ServerCert, "TLS_KEY_FILE": pki.ServerKey}},
		{name: "client certificates alone enable the generic endpoint", env: map[string]string{"TLS_CERT_FILE": pki.ServerCert, "TLS_KEY_FILE": pki.ServerKey,
			"TLS_CLIENT_CA_FILE": pki.CAFile, "GENERIC_CLIENT_NAMES": "keycloak,mapper.internal"}},
		{name: "certificate without key", env: map[string]string{"API_TOKENS": "t", "TLS_CERT_FILE": pki.ServerCert}, err: "TLS_CERT_FILE and CUSTOMDATA_BRIDGE_TLS_KEY_FILE go together"},
		{name: "key without certificate", env: map[string]string{"API_TOKENS": "t", "TLS_KEY_FILE": pki.ServerKey}, err: "go together"},
		{name: "client CA without HTTPS", env: map[string]string{"TLS_CLIENT_CA_FILE": pki.CAFile}, err: "TLS_CLIENT_CA_FILE needs"},
		{name: "names without client CA", env: map[string]string{"API_TOKENS": "t", "GENERIC_CLIENT_NAMES": "keycloak"}, err: "GENERIC_CLIENT_NAMES needs"},
		{name: "blank name", env: map[string]string{"TLS_CERT_FILE": pki.ServerCert, "TLS_KEY_FILE": pki.ServerKey, "TLS_CLIENT_CA_FILE": pki.CAFile,
			"GENERIC_CLIENT_NAMES": "keycloak, "}, err: "GENERIC_CLIENT_NAMES has a blank name"},
		{name: "missing certificate", env: map[string]string{"API_TOKENS": "t", "TLS_CERT_FILE": missing, "TLS_KEY_FILE": pki.ServerKey}, err: missing},
		{name: "key of another certificate", env: map[string]string{"API_TOKENS": "t", "TLS_CERT_FILE": pki.ServerCert, "TLS_KEY_FILE": pki.ClientKey}, err: pki.ClientKey},
		{name: "missing client CA", env: map[string]string{"TLS_CERT_FILE": pki.ServerCert, "TLS_KEY_FILE": pki.ServerKey, "TLS_CLIENT_CA_FILE": missing}, err: "client CA file " + missing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(envPrefix+"_"+k, v)
			}
			_, err := loadConfig()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("loadConfig: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("loadConfig: %v, want an error containing %q", err, tc.err)
			}
		})
	}
}

// A bridge with TLS files serves HTTPS on HTTP_ADDR: a client certificate
// its CA verified and whose name is listed authenticates the generic
// endpoint (here answered 503: MongoDB does not answer), a listed bearer
// token too; neither gets 401, another name 403, and plain HTTP is refused.
func TestBridgeServesHTTPSWithClientCertificates(t *testing.T) {
	pki := testsupport.NewPKI(t, "bridge")
	allowedCert, allowedKey := pki.IssueClient(t, "keycloak")
	var cfg Config
	if err := envconfig.Process("CUSTOMDATA_BRIDGE_TLS_NOT_SET", &cfg); err != nil { // the defaults
		t.Fatal(err)
	}
	cfg.HTTPAddr, cfg.OpsAddr = "127.0.0.1:0", ""
	cfg.MongoURI = "mongodb://" + freeAddr(t) + "/?directConnection=true" // nothing listens
	cfg.NoticesEnabled, cfg.CacheMaxEntries, cfg.HookTimeout = false, 0, 200*time.Millisecond
	cfg.APITokens = []string{"tok"}
	cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSClientCAFile = pki.ServerCert, pki.ServerKey, pki.CAFile
	cfg.GenericClientNames = []string{"keycloak"}
	cfg.LogLevel = "error"
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan running, 1)
	done := make(chan error, 1)
	go func() { done <- runBridge(ctx, cfg, newLogger(cfg, testWriter{t}), ready) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("bridge: %v", err)
		}
	}()
	var base string
	select {
	case r := <-ready:
		base = r.URL
	case err := <-done:
		t.Fatalf("bridge stopped: %v", err)
	}
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("base URL %s", base)
	}

	ca, err := os.ReadFile(pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	call := func(certFile, keyFile, token string) (int, string) {
		t.Helper()
		tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if certFile != "" {
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 30 * time.Second}
		defer c.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/users/ada/custom-data", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	for _, tc := range []struct {
		name, cert, key, token string
		status                 int
		body                   string
	}{
		{"listed certificate", allowedCert, allowedKey, "", 503, "custom data unavailable"},
		{"token", "", "", "tok", 503, "custom data unavailable"},
		{"neither", "", "", "", 401, "bearer token or client certificate required"},
		{"certificate of a name not listed", pki.ClientCert, pki.ClientKey, "", 403, "client certificate not accepted"},
	} {
		if code, body := call(tc.cert, tc.key, tc.token); code != tc.status || !strings.Contains(body, tc.body) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, code, body, tc.status, tc.body)
		}
	}
	res, err := http.Get("http://" + strings.TrimPrefix(base, "https://") + "/v1/users/ada/custom-data")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("plain HTTP to the HTTPS listener: %d", res.StatusCode)
	}
}
