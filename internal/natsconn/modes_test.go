package natsconn_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/internal/natsconn"
)

// Each authentication mode against a real server: the right settings
// connect and carry a request; wrong ones are refused at once (Refused,
// so a binary stops instead of retrying) with an error that shows none of
// the secrets.
func TestEveryAuthenticationMode(t *testing.T) {
	const password, token = "pw-9-secret", "tok-9-secret"

	userURL := startServer(t, &server.Options{Username: "app", Password: password})
	tokenURL := startServer(t, &server.Options{Authorization: token})

	nkeyUser, strangerUser := mustKey(t, nkeys.CreateUser), mustKey(t, nkeys.CreateUser)
	nkeyPub, _ := nkeyUser.PublicKey()
	nkeyURL := startServer(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: nkeyPub}}})

	op := newOperator(t)
	jwtURL := startServer(t, op.serverOptions(t))

	ca, otherCA := newPKI(t, "private"), newPKI(t, "other")
	tlsURL := startServer(t, &server.Options{TLS: true, TLSConfig: serverTLS(t, ca, false)})
	mtlsURL := startServer(t, &server.Options{TLS: true, TLSVerify: true, TLSConfig: serverTLS(t, ca, true)})
	plainURL := startServer(t, &server.Options{})

	type mode struct {
		name    string
		ok      natsconn.Config
		refused []natsconn.Config
	}
	modes := []mode{
		{"user and password", natsconn.Config{URL: userURL, User: "app", Password: password}, []natsconn.Config{
			{URL: userURL, User: "app", Password: "wrong-" + password},
			{URL: userURL},
		}},
		{"token", natsconn.Config{URL: tokenURL, Token: token}, []natsconn.Config{
			{URL: tokenURL, Token: "wrong-" + token},
		}},
		{"nkey", natsconn.Config{URL: nkeyURL, NKeySeedFile: seedFile(t, nkeyUser)}, []natsconn.Config{
			{URL: nkeyURL, NKeySeedFile: seedFile(t, strangerUser)},
		}},
		{"creds file (JWT accounts)", natsconn.Config{URL: jwtURL, CredsFile: creds(t, op.account, time.Time{})}, []natsconn.Config{
			{URL: jwtURL, CredsFile: creds(t, mustKey(t, nkeys.CreateAccount), time.Time{})}, // an account the operator does not know
			{URL: jwtURL, CredsFile: creds(t, op.account, time.Now().Add(-time.Minute))},     // expired
		}},
		{"TLS with a private CA", natsconn.Config{URL: tlsURL, TLSCAFile: ca.CAFile}, []natsconn.Config{
			{URL: tlsURL, TLSCAFile: otherCA.CAFile},
			{URL: tlsURL},                         // the system roots do not know the private CA
			{URL: plainURL, TLSCAFile: ca.CAFile}, // TLS wanted, the server has none
		}},
		{"mutual TLS", natsconn.Config{URL: mtlsURL, TLSCAFile: ca.CAFile, TLSCertFile: ca.ClientCert, TLSKeyFile: ca.ClientKey}, []natsconn.Config{
			{URL: mtlsURL, TLSCAFile: ca.CAFile},
			{URL: mtlsURL, TLSCAFile: ca.CAFile, TLSCertFile: otherCA.ClientCert, TLSKeyFile: otherCA.ClientKey},
		}},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			nc, err := natsconn.Connect(m.ok, zerolog.Nop())
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			defer nc.Close()
			sub, err := nc.Subscribe("ping", func(msg *nats.Msg) { _ = msg.Respond([]byte("pong")) })
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = sub.Unsubscribe() }()
			if reply, err := nc.Request("ping", nil, 10*time.Second); err != nil || string(reply.Data) != "pong" {
				t.Fatalf("request: %v, %v", reply, err)
			}

			for i, cfg := range m.refused {
				nc, err := natsconn.Connect(cfg, zerolog.Nop())
				if err == nil {
					nc.Close()
					t.Fatalf("wrong settings #%d connected", i+1)
				}
				t.Logf("wrong settings #%d: %v", i+1, err)
				if !natsconn.Refused(err) {
					t.Errorf("wrong settings #%d: %v is not a refusal (would be retried)", i+1, err)
				}
				for _, secret := range secretsOf(t, cfg) {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("wrong settings #%d: error shows a secret: %v", i+1, err)
					}
				}
			}
		})
	}
}

// A server that is not there is an outage, retried, not a refusal.
func TestNoServerIsNotARefusal(t *testing.T) {
	nc, err := natsconn.Connect(natsconn.Config{URL: "nats://127.0.0.1:1"}, zerolog.Nop())
	if err == nil {
		nc.Close()
		t.Fatal("connected to nothing")
	}
	if natsconn.Refused(err) {
		t.Fatalf("%v counted as a refusal", err)
	}
}

func seedFile(t *testing.T, kp nkeys.KeyPair) string {
	t.Helper()
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "user.nk", seed)
}

// secretsOf are the configured password and token and the secret material
// of the configured files (seeds, private keys, the base64 body of PEMs).
func secretsOf(t *testing.T, cfg natsconn.Config) []string {
	t.Helper()
	var out []string
	for _, s := range []string{cfg.Password, cfg.Token} {
		if s != "" {
			out = append(out, s)
		}
	}
	for _, f := range []string{cfg.NKeySeedFile, cfg.CredsFile, cfg.TLSKeyFile} {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); len(line) >= 16 && !strings.HasPrefix(line, "-----") {
				out = append(out, line)
			}
		}
	}
	return out
}
