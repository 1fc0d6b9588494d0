package main

import (
	"bytes"
	"context"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/internal/ops"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

func healthcheck(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(append([]string{"healthcheck"}, args...), &out, &errOut)
	return code, out.String() + errOut.String()
}

// The real worker answers its healthcheck verb once ready; with nothing
// listening, or the ops endpoints off, the verb exits 1 saying why.
func TestHealthcheckVerb(t *testing.T) {
	m := testsupport.MongoDB(t)
	n := testsupport.StartNATS(t)
	addr := freeAddr(t)
	t.Setenv("CUSTOMDATA_MONGODB_URI", m.URI)
	t.Setenv("CUSTOMDATA_MONGODB_DATABASE", testsupport.DatabaseName(t))
	t.Setenv("CUSTOMDATA_NATS_URL", n.URL)
	t.Setenv("CUSTOMDATA_HTTP_ADDR", addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	logs := &testsupport.Logs{}
	done := make(chan error, 1)
	go func() { done <- runWorker(ctx, cfg, newLogger(cfg, logs)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runWorker = %v\nlogs:\n%s", err, logs.String())
		}
	}()
	var code int
	var out string
	testsupport.Eventually(t, "healthcheck exits 0", func() bool {
		code, out = healthcheck(t)
		return code == exitOK
	})
	if want := "healthy: http://" + addr + "/readyz answered 200 OK\n"; out != want {
		t.Errorf("healthy: %q, want %q", out, want)
	}
	if code, out := healthcheck(t, "--path", "/livez"); code != exitOK || !strings.Contains(out, "/livez answered 200 OK") {
		t.Errorf("--path /livez: exit %d %q", code, out)
	}

	t.Run("not listening", func(t *testing.T) {
		idle := freeAddr(t)
		t.Setenv("CUSTOMDATA_HTTP_ADDR", idle)
		code, out := healthcheck(t, "--timeout", "2s")
		if want := "unhealthy: GET http://" + idle + "/readyz: dial tcp " + idle + ": connect: connection refused\n"; code != exitFailed || out != want {
			t.Fatalf("exit %d %q, want 1 %q", code, out, want)
		}
	})
	t.Run("ops endpoints off", func(t *testing.T) {
		t.Setenv("CUSTOMDATA_HTTP_ADDR", "")
		if code, out := healthcheck(t); code != exitFailed || out != "unhealthy: CUSTOMDATA_HTTP_ADDR is empty: the ops endpoints are off\n" {
			t.Fatalf("exit %d %q", code, out)
		}
	})
	t.Run("bad flag", func(t *testing.T) {
		// Docker reserves exit 2: a usage error is unhealthy too.
		if code, _ := healthcheck(t, "--frobnicate"); code != exitFailed {
			t.Fatalf("exit %d, want 1", code)
		}
	})
}

// The Dockerfile's HEALTHCHECK and the compose service's healthcheck run
// the image's own binary with the healthcheck verb, in exec form (the
// image has no shell), within a timeout longer than the verb's; the
// verb they run works (0 on a ready ops server, 1 with nothing there); and
// it probes the port the image exposes and compose publishes, because
// both are the port of HTTP_ADDR.
func TestHealthchecksRunTheVerb(t *testing.T) {
	df := testsupport.ReadDockerfile(t, "../../deploy/Dockerfile")
	svc := loadCompose(t).Services["worker"]
	if svc.Healthcheck == nil {
		t.Fatal("the compose worker has no healthcheck")
	}
	composeTest, ok := svc.Healthcheck.Test.([]any)
	if !ok || len(composeTest) == 0 || composeTest[0] != "CMD" {
		t.Fatalf("compose healthcheck test %v, want [CMD, binary, healthcheck] (exec form: the image has no shell)", svc.Healthcheck.Test)
	}
	var composeCmd []string
	for _, a := range composeTest[1:] {
		composeCmd = append(composeCmd, a.(string))
	}
	for where, hc := range map[string]struct {
		cmd     []string
		timeout string
	}{
		"Dockerfile HEALTHCHECK": {df.Healthcheck, df.HealthcheckOptions["timeout"]},
		"compose healthcheck":    {composeCmd, svc.Healthcheck.Timeout},
	} {
		if len(hc.cmd) < 2 || hc.cmd[0] != df.Entrypoint[0] || hc.cmd[1] != "healthcheck" {
			t.Errorf("%s runs %v, want the image's binary %s with the healthcheck verb", where, hc.cmd, df.Entrypoint[0])
			continue
		}
		if d, err := time.ParseDuration(hc.timeout); err != nil || d <= ops.DefaultProbeTimeout {
			t.Errorf("%s timeout %q: want one longer than the verb's own %s, so the verb says why", where, hc.timeout, ops.DefaultProbeTimeout)
		}
		args := hc.cmd[1:]
		up := opsServer(t)
		t.Setenv("CUSTOMDATA_HTTP_ADDR", up)
		var out bytes.Buffer
		if code := run(args, &out, &out); code != exitOK {
			t.Errorf("%s: %v exits %d on a ready worker: %s", where, args, code, out.String())
		}
		t.Setenv("CUSTOMDATA_HTTP_ADDR", freeAddr(t))
		out.Reset()
		if code := run(args, &out, &out); code != exitFailed {
			t.Errorf("%s: %v exits %d with nothing listening: %s", where, args, code, out.String())
		}
	}

	field, _ := reflect.TypeOf(Config{}).FieldByName("HTTPAddr")
	_, port, err := net.SplitHostPort(field.Tag.Get("default"))
	if err != nil {
		t.Fatal(err)
	}
	if len(df.Expose) != 1 || df.Expose[0] != port {
		t.Errorf("the image exposes %v, the worker listens on port %s by default", df.Expose, port)
	}
	if a := svc.Environment["CUSTOMDATA_HTTP_ADDR"]; a != "" {
		_, port, _ = net.SplitHostPort(a)
	}
	published := false
	for _, p := range svc.Ports {
		parts := strings.Split(p, ":")
		published = published || parts[len(parts)-1] == port
	}
	if !published {
		t.Errorf("compose publishes %v; the worker's ops port is %s", svc.Ports, port)
	}
}

// opsServer is the worker's ops server with every check passing, on a
// loopback port, until the test ends.
func opsServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = ops.NewServer("", prometheus.NewRegistry(), zerolog.Nop()).Serve(ctx, ln)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}
