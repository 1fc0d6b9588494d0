package main

import (
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/customdata-worker/customdata-worker/internal/ops"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

type composeService struct {
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Healthcheck *struct {
		Test    any    `yaml:"test"` // a string (shell form) or a list
		Timeout string `yaml:"timeout"`
	} `yaml:"healthcheck"`
}

func composeServices(t *testing.T) map[string]composeService {
	t.Helper()
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c.Services
}

// The compose stack's reference issuer sets only variables the issuer
// reads, and connects to NATS as its own user of deploy/nats/nats.conf
// with the password the nats service was given.
func TestComposeMatchesTheReferenceIssuer(t *testing.T) {
	services := composeServices(t)
	vars := map[string]bool{}
	typ := reflect.TypeOf(Config{})
	for _, f := range reflect.VisibleFields(typ) { // natsconn.Env's fields too
		if !f.Anonymous {
			vars[envPrefix+"_"+f.Tag.Get("envconfig")] = true
		}
	}
	env := services["reference-issuer"].Environment
	if len(env) == 0 {
		t.Fatal("no reference-issuer service")
	}
	for name := range env {
		if !vars[name] {
			t.Errorf("compose sets %s, which the reference issuer does not read", name)
		}
	}
	if env["ISSUER_NATS_USER"] != "reference-issuer" || env["ISSUER_NATS_PASSWORD"] != services["nats"].Environment["NATS_REFERENCE_ISSUER_PASSWORD"] {
		t.Errorf("the reference issuer connects as %q with a password the server does not have for it", env["ISSUER_NATS_USER"])
	}
	users := testsupport.NATSConfUsers(t, "../../deploy/nats/nats.conf")
	if p := env["ISSUER_NATS_INBOX_PREFIX"]; !testsupport.MaySubscribeUnder(users["reference-issuer"], p) {
		t.Errorf("inbox prefix %q is not the inbox nats.conf lets reference-issuer read: it would get no replies", p)
	}
}

// The image's HEALTHCHECK and the compose service's healthcheck run the
// image's binary with the healthcheck verb (exec form: no shell in the
// image) within a timeout longer than the verb's; the verb they run
// passes on a ready /readyz and fails with nothing listening; and it
// probes the port the issuer listens on (ISSUER_HTTP_ADDR in compose,
// which it publishes; the default's port, which the image exposes).
func TestHealthchecksRunTheVerb(t *testing.T) {
	df := testsupport.ReadDockerfile(t, "../../deploy/reference-issuer.Dockerfile")
	svc := composeServices(t)["reference-issuer"]
	var test []string
	if svc.Healthcheck != nil {
		list, _ := svc.Healthcheck.Test.([]any)
		for _, a := range list {
			s, _ := a.(string)
			test = append(test, s)
		}
	}
	if len(test) == 0 || test[0] != "CMD" {
		t.Fatalf("compose healthcheck %+v, want test [CMD, binary, healthcheck] (exec form: the image has no shell)", svc.Healthcheck)
	}
	ready := readyServer(t)
	for where, hc := range map[string]struct {
		cmd     []string
		timeout string
	}{
		"Dockerfile HEALTHCHECK": {df.Healthcheck, df.HealthcheckOptions["timeout"]},
		"compose healthcheck":    {test[1:], svc.Healthcheck.Timeout},
	} {
		if len(hc.cmd) < 2 || hc.cmd[0] != df.Entrypoint[0] || hc.cmd[1] != "healthcheck" {
			t.Errorf("%s runs %v, want the image's binary %s with the healthcheck verb", where, hc.cmd, df.Entrypoint[0])
			continue
		}
		if d, err := time.ParseDuration(hc.timeout); err != nil || d <= ops.DefaultProbeTimeout {
			t.Errorf("%s timeout %q: want one longer than the verb's own %s", where, hc.timeout, ops.DefaultProbeTimeout)
		}
		var out strings.Builder
		t.Setenv("ISSUER_HTTP_ADDR", ready)
		if code := run(hc.cmd[1:], &out, &out); code != 0 {
			t.Errorf("%s exits %d on a ready issuer: %s", where, code, out.String())
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		idle := ln.Addr().String()
		ln.Close()
		t.Setenv("ISSUER_HTTP_ADDR", idle)
		out.Reset()
		if code := run(hc.cmd[1:], &out, &out); code != 1 || !strings.Contains(out.String(), "connection refused") {
			t.Errorf("%s with nothing listening: exit %d %q, want 1 and the refusal", where, code, out.String())
		}
	}

	field, _ := reflect.TypeOf(Config{}).FieldByName("HTTPAddr")
	_, port, err := net.SplitHostPort(field.Tag.Get("default"))
	if err != nil {
		t.Fatal(err)
	}
	if len(df.Expose) != 1 || df.Expose[0] != port {
		t.Errorf("the image exposes %v, the issuer listens on port %s by default", df.Expose, port)
	}
	if _, port, err = net.SplitHostPort(svc.Environment["ISSUER_HTTP_ADDR"]); err != nil {
		t.Fatalf("compose ISSUER_HTTP_ADDR: %v", err)
	}
	published := false
	for _, p := range svc.Ports {
		parts := strings.Split(p, ":")
		published = published || parts[len(parts)-1] == port
	}
	if !published {
		t.Errorf("compose publishes %v; the issuer listens on port %s", svc.Ports, port)
	}
}

// readyServer answers /readyz 200 "ok" as a ready issuer does, until the
// test ends.
func readyServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}
