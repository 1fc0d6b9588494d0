package worker

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/internal/outage"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// MongoDB's TLS settings live in the connection string (tls, tlsCAFile,
// tlsCertificateKeyFile), as the driver documents. The stand-in speaks no
// TLS, so these run it behind a TLS-terminating proxy: the handshake, the
// private CA and the client certificate are real, the server behind is
// the stand-in (or MONGODB_URI when it is a plain single host).
func TestMongoTLSSettingsInTheURI(t *testing.T) {
	m := testsupport.MongoDB(t)
	if u, err := url.Parse(m.URI); err != nil || strings.Contains(u.Host, ",") || u.Query().Get("tls") == "true" {
		t.Skip("MONGODB_URI is not a plain single host to put a TLS proxy in front of; see TestMongoTLSAgainstMONGODB_URI")
	}
	ca := testsupport.NewPKI(t, "mongo")
	other := testsupport.NewPKI(t, "other")
	tlsAddr := testsupport.StartMongoTLSProxy(t, m, ca.ServerTLS(t, false))
	mtlsAddr := testsupport.StartMongoTLSProxy(t, m, ca.ServerTLS(t, true))
	uri := func(addr string, q ...string) string {
		return "mongodb://" + addr + "/?directConnection=true&" + strings.Join(q, "&")
	}
	cases := []struct {
		name, uri string
		wantErr   string // "" for a working connection
	}{
		{"private CA", uri(tlsAddr, "tls=true", "tlsCAFile="+ca.CAFile), ""},
		{"mutual TLS", uri(mtlsAddr, "tls=true", "tlsCAFile="+ca.CAFile, "tlsCertificateKeyFile="+ca.ClientCertKey), ""},
		{"server signed by a CA not trusted", uri(tlsAddr, "tls=true", "tlsCAFile="+other.CAFile), "certificate signed by unknown authority"},
		{"no client certificate where one is required", uri(mtlsAddr, "tls=true", "tlsCAFile="+ca.CAFile), "tls: certificate required"},
		// Go's client offers only a certificate of a CA the server names:
		// none here, so the server sees none.
		{"client certificate from another CA", uri(mtlsAddr, "tls=true", "tlsCAFile="+ca.CAFile, "tlsCertificateKeyFile="+other.ClientCertKey), "tls: certificate required"},
		{"plain connection to a TLS server", uri(tlsAddr), "connection closed unexpectedly by the other side"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := ValidateMongoURI(tc.uri); err != nil {
				t.Fatalf("a URI the driver accepts failed validation: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			client, err := ConnectMongo(ctx, tc.uri, "tls-test", 3*time.Second)
			if tc.wantErr != "" {
				if err == nil {
					_ = client.Disconnect(ctx)
					t.Fatal("connected")
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %q, want it to say %q", err, tc.wantErr)
				}
				// README: retried like an outage (fixed by an operator
				// while the worker waits), and named on /readyz.
				if !outage.Is(err) {
					t.Fatalf("error %q is not an outage: the worker would stop instead of waiting", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer client.Disconnect(ctx)
			coll := client.Database(testsupport.DatabaseName(t)).Collection("tls")
			if _, err := coll.InsertOne(ctx, bson.D{{Key: "userId", Value: "ada"}}); err != nil {
				t.Fatalf("write over TLS: %v", err)
			}
			if n, err := coll.CountDocuments(ctx, bson.D{{Key: "userId", Value: "ada"}}); err != nil || n != 1 {
				t.Fatalf("read over TLS: %d, %v", n, err)
			}
		})
	}
}

// A TLS file named in the URI that cannot be read is a configuration
// error naming the file, found at start, not an outage retried forever.
func TestMongoTLSFileThatCannotBeReadStopsTheStart(t *testing.T) {
	missing := t.TempDir() + "/missing-ca.pem"
	for _, q := range []string{"tlsCAFile=" + missing, "tlsCertificateKeyFile=" + missing} {
		uri := "mongodb://app:S3cretPassw0rd@127.0.0.1:27017/?tls=true&" + q
		err := ValidateMongoURI(uri)
		if err == nil || !strings.Contains(err.Error(), missing) {
			t.Fatalf("%s: %v, want an error naming %s", q, err, missing)
		}
		if outage.Is(err) {
			t.Fatalf("%s: %v is an outage: the worker would wait for a file instead of stopping", q, err)
		}
		if strings.Contains(err.Error(), "S3cretPassw0rd") {
			t.Fatalf("error carries the password: %v", err)
		}
	}
}

// A TLS file that can be read but holds no usable PEM is a configuration
// error too; the driver's message does not say which file, so the error
// names the TLS files the URI configures.
func TestMongoTLSFileThatIsNotPEMIsNamed(t *testing.T) {
	junk := t.TempDir() + "/junk.pem"
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"tlsCAFile=" + junk, "tlsCertificateKeyFile=" + junk} {
		err := ValidateMongoURI("mongodb://127.0.0.1:27017/?tls=true&" + q)
		if err == nil || !strings.Contains(err.Error(), q) {
			t.Fatalf("%s: %v, want an error naming %s", q, err, q)
		}
	}
}

// With MONGODB_URI pointing at a real TLS server (tls=true and its
// tlsCAFile, with or without a client certificate and SCRAM credentials),
// the worker's connection works over it and a change stream opens; with
// MONGODB_REQUIRE_TLS=true (a server in net.tls.mode requireTLS, not
// allowTLS or preferTLS), the same URI without TLS is refused.
func TestMongoTLSAgainstMONGODB_URI(t *testing.T) {
	uri := os.Getenv("MONGODB_URI")
	// As the driver reads it: option names in any case, and mongodb+srv
	// turning TLS on by default.
	if uri == "" || options.Client().ApplyURI(uri).TLSConfig == nil {
		t.Skip("MONGODB_URI does not use TLS; the TLS proxy test covers the settings")
	}
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client, err := ConnectMongo(ctx, uri, "tls-test", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(ctx)
	cs, err := client.Database(testsupport.DatabaseName(t)).Collection("tls").Watch(ctx, mongo.Pipeline{})
	if err != nil {
		t.Fatalf("change stream over TLS: %v", err)
	}
	_ = cs.Close(ctx)

	if os.Getenv("MONGODB_REQUIRE_TLS") != "true" || u.Scheme != "mongodb" {
		return
	}
	q := u.Query()
	q.Del("ssl")
	q.Set("tls", "false")
	for _, k := range []string{"tlsCAFile", "tlsCertificateKeyFile", "tlsCertificateKeyFilePassword", "tlsInsecure", "tlsAllowInvalidCertificates", "tlsAllowInvalidHostnames"} {
		q.Del(k)
	}
	u.RawQuery = q.Encode()
	if c, err := ConnectMongo(ctx, u.String(), "tls-test", 5*time.Second); err == nil {
		_ = c.Disconnect(ctx)
		t.Fatal("the same server answered without TLS: MONGODB_URI's server does not require it")
	}
}
