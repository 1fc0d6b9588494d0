package bridge

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/internal/tlsfiles"
)

// tlsBridge serves s over TLS as the bridge's listener does
// (tlsfiles.ServerConfig: client certificates verified against pki's CA
// when given).
func tlsBridge(t *testing.T, s *Server, pki testsupport.PKI) *httptest.Server {
	t.Helper()
	cfg, err := tlsfiles.ServerConfig(pki.ServerCert, pki.ServerKey, pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.TLS = cfg
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}

// tlsClient trusts pki's CA and presents the client certificate of
// certFile and keyFile, if any.
func tlsClient(t *testing.T, pki testsupport.PKI, certFile, keyFile string) *http.Client {
	t.Helper()
	ca, err := os.ReadFile(pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

type tlsAnswer struct {
	status int
	body   string
	auth   string // WWW-Authenticate
	err    error  // the call failed (the handshake was refused)
}

func do(c *http.Client, r *http.Request) tlsAnswer {
	res, err := c.Do(r)
	if err != nil {
		return tlsAnswer{err: err}
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return tlsAnswer{status: res.StatusCode, body: string(b), auth: res.Header.Get("WWW-Authenticate")}
}

// The generic endpoint over TLS takes a client certificate the bridge's
// CA verified, or a bearer token; a certificate of another CA is refused
// at the handshake; with GENERIC_CLIENT_NAMES, a verified certificate of
// another name is refused with 403. Supabase's hook, whose sender
// presents no certificate, still works on the same listener.
func TestGenericEndpointOverMutualTLS(t *testing.T) {
	pki := testsupport.NewPKI(t, "bridge")
	other := testsupport.NewPKI(t, "other")
	keycloakCert, keycloakKey := pki.IssueClient(t, "keycloak")
	mapperCert, mapperKey := pki.IssueClient(t, "issuer-7", "mapper.auth.internal")
	strangerCert, strangerKey := pki.IssueClient(t, "stranger")

	sec := secret(t)
	data := newFakeData(t, map[string]string{supabaseUser: `{"userId":"` + supabaseUser + `","plan":"pro"}`})
	get := func(ts *httptest.Server, token string) *http.Request {
		r, err := http.NewRequest(http.MethodGet, ts.URL+"/v1/users/"+supabaseUser+"/custom-data", nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		return r
	}
	ok := func(t *testing.T, a tlsAnswer) {
		t.Helper()
		var resp struct {
			CustomData map[string]any `json:"custom_data"`
		}
		if a.err != nil || a.status != 200 || json.Unmarshal([]byte(a.body), &resp) != nil || resp.CustomData["plan"] != "pro" {
			t.Fatalf("want 200 with the data: %+v", a)
		}
	}

	t.Run("any certificate of the CA", func(t *testing.T) {
		s, err := New(data, Config{}, WithGeneric([]string{"tok"}), WithGenericClientCerts(nil), WithSupabase(verifier(t, sec)))
		if err != nil {
			t.Fatal(err)
		}
		ts := tlsBridge(t, s, pki)
		ok(t, do(tlsClient(t, pki, pki.ClientCert, pki.ClientKey), get(ts, "")))
		ok(t, do(tlsClient(t, pki, keycloakCert, keycloakKey), get(ts, "wrong-token"))) // the certificate is enough
		ok(t, do(tlsClient(t, pki, "", ""), get(ts, "tok")))

		a := do(tlsClient(t, pki, "", ""), get(ts, ""))
		if a.status != 401 || !strings.Contains(a.body, `"bearer token or client certificate required"`) || a.auth == "" {
			t.Fatalf("no certificate, no token: %+v", a)
		}
		// A Go client presents no certificate the server's CA list does
		// not name; one that presents it anyway fails the handshake.
		if a := do(tlsClient(t, pki, other.ClientCert, other.ClientKey), get(ts, "")); a.status != 401 {
			t.Fatalf("a certificate of another CA: %+v", a)
		}
		forced := tlsClient(t, pki, "", "")
		otherCert, err := tls.LoadX509KeyPair(other.ClientCert, other.ClientKey)
		if err != nil {
			t.Fatal(err)
		}
		forced.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &otherCert, nil
		}
		if a := do(forced, get(ts, "tok")); a.err == nil || !strings.Contains(a.err.Error(), "certificate") {
			t.Fatalf("a certificate of another CA, presented anyway, was not refused at the handshake: %+v", a)
		}

		// Supabase Auth presents no certificate: its hook is verified by
		// its signature as over plain HTTP.
		r := supabaseCall(t, fixture(t, "supabase/custom-access-token.json"), time.Now(), sec)
		r.RequestURI, r.URL.Scheme, r.URL.Host = "", "https", strings.TrimPrefix(ts.URL, "https://")
		if a := do(tlsClient(t, pki, "", ""), r); a.status != 200 || !strings.Contains(a.body, `"plan":"pro"`) {
			t.Fatalf("Supabase hook over TLS: %+v", a)
		}
	})

	t.Run("named certificates only", func(t *testing.T) {
		// DNS names compare case-insensitively: Mapper.Auth.Internal is the
		// certificate's mapper.auth.internal.
		s, err := New(data, Config{}, WithGeneric([]string{"tok"}), WithGenericClientCerts([]string{"keycloak", "Mapper.Auth.Internal"}))
		if err != nil {
			t.Fatal(err)
		}
		ts := tlsBridge(t, s, pki)
		ok(t, do(tlsClient(t, pki, keycloakCert, keycloakKey), get(ts, ""))) // common name
		ok(t, do(tlsClient(t, pki, mapperCert, mapperKey), get(ts, "")))     // DNS name
		a := do(tlsClient(t, pki, strangerCert, strangerKey), get(ts, ""))
		if a.status != 403 || !strings.Contains(a.body, `"client certificate not accepted"`) {
			t.Fatalf("a verified certificate of a name not listed: %+v", a)
		}
		ok(t, do(tlsClient(t, pki, strangerCert, strangerKey), get(ts, "tok"))) // its token is still enough
		if got := metric(t, s, "customdata_bridge_hook_calls_total", map[string]string{"hook": "generic", "outcome": "unauthorized"}); got != 1 {
			t.Fatalf("refused calls counted: %v", got)
		}
	})

	t.Run("certificates without tokens", func(t *testing.T) {
		s, err := New(data, Config{}, WithGenericClientCerts(nil))
		if err != nil {
			t.Fatal(err)
		}
		ts := tlsBridge(t, s, pki)
		ok(t, do(tlsClient(t, pki, pki.ClientCert, pki.ClientKey), get(ts, "")))
		a := do(tlsClient(t, pki, "", ""), get(ts, "tok"))
		if a.status != 401 || !strings.Contains(a.body, `"client certificate required"`) || a.auth != "" {
			t.Fatalf("no certificate, tokens not configured: %+v", a)
		}
	})

	// Over plain HTTP no certificate can be verified: only tokens count.
	t.Run("plain HTTP", func(t *testing.T) {
		s, err := New(data, Config{}, WithGeneric([]string{"tok"}), WithGenericClientCerts(nil))
		if err != nil {
			t.Fatal(err)
		}
		if w := serve(s, genericCall(supabaseUser, "")); w.Code != 401 {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		if w := serve(s, genericCall(supabaseUser, "tok")); w.Code != 200 {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	})
}

func TestWithGenericClientCertsRefusesBlankNames(t *testing.T) {
	if _, err := New(newFakeData(t, nil), Config{}, WithGenericClientCerts([]string{"a", " "})); err == nil {
		t.Fatal("a blank name was accepted")
	}
}
