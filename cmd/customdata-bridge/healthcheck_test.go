package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/customdata-worker/customdata-worker/internal/ops"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// The image's HEALTHCHECK and the compose service's healthcheck run the
// bridge's healthcheck verb (exec form: the image has no shell) within a
// timeout longer than the verb's own; the verb passes on a ready /readyz
// on CUSTOMDATA_BRIDGE_OPS_ADDR and fails, with the reason, when nothing
// listens there.
func TestHealthchecksRunTheVerb(t *testing.T) {
	df := testsupport.ReadDockerfile(t, "../../deploy/bridge.Dockerfile")
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Healthcheck *struct {
				Test any `yaml:"test"` // a string or a list

				Timeout string `yaml:"timeout"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	hc := c.Services["customdata-bridge"].Healthcheck
	var test []string
	if hc != nil {
		list, _ := hc.Test.([]any)
		for _, a := range list {
			s, _ := a.(string)
			test = append(test, s)
		}
	}
	if len(test) < 2 || test[0] != "CMD" {
		t.Fatalf("compose healthcheck %+v, want test [CMD, binary, healthcheck] (exec form: the image has no shell)", hc)
	}
	ready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	}))
	defer ready.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	idle := ln.Addr().String()
	ln.Close()
	for where, check := range map[string]struct {
		cmd     []string
		timeout string
	}{
		"Dockerfile HEALTHCHECK": {df.Healthcheck, df.HealthcheckOptions["timeout"]},
		"compose healthcheck":    {test[1:], hc.Timeout},
	} {
		if len(check.cmd) < 2 || check.cmd[0] != df.Entrypoint[0] || check.cmd[1] != "healthcheck" {
			t.Errorf("%s runs %v, want %s healthcheck", where, check.cmd, df.Entrypoint[0])
			continue
		}
		if d, err := time.ParseDuration(check.timeout); err != nil || d <= ops.DefaultProbeTimeout {
			t.Errorf("%s timeout %q: want one longer than the verb's own %s", where, check.timeout, ops.DefaultProbeTimeout)
		}
		var out strings.Builder
		t.Setenv("CUSTOMDATA_BRIDGE_OPS_ADDR", strings.TrimPrefix(ready.URL, "http://"))
		if code := run(check.cmd[1:], &out, &out); code != 0 {
			t.Errorf("%s exits %d on a ready bridge: %s", where, code, out.String())
		}
		out.Reset()
		t.Setenv("CUSTOMDATA_BRIDGE_OPS_ADDR", idle)
		if code := run(check.cmd[1:], &out, &out); code != 1 || !strings.Contains(out.String(), "connection refused") {
			t.Errorf("%s with nothing listening: exit %d %q, want 1 and the refusal", where, code, out.String())
		}
	}
	out := strings.Builder{}
	t.Setenv("CUSTOMDATA_BRIDGE_OPS_ADDR", "")
	if code := run([]string{"healthcheck"}, &out, &out); code != 1 || !strings.Contains(out.String(), "OPS_ADDR is empty") {
		t.Errorf("healthcheck with the ops endpoints off: exit %d %q, want 1 and why", code, out.String())
	}
}
