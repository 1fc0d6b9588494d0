package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v3"

	"github.com/customdata-worker/customdata-worker/internal/ops"
)

// The compose stack's bridge sets only variables the bridge reads, with
// values its configuration accepts, connects to NATS as its own user of
// deploy/nats/nats.conf with the password the nats service was given, and
// publishes the ports it listens on.
func TestComposeMatchesTheBridge(t *testing.T) {
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Build struct {
				Dockerfile string `yaml:"dockerfile"`
			} `yaml:"build"`
			Environment map[string]string `yaml:"environment"`
			Ports       []string          `yaml:"ports"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	svc, ok := c.Services["customdata-bridge"]
	if !ok {
		t.Fatal("no customdata-bridge service")
	}
	vars := map[string]bool{}
	typ := reflect.TypeOf(Config{})
	for _, f := range reflect.VisibleFields(typ) { // natsconn.Env's fields too
		if !f.Anonymous {
			vars[envPrefix+"_"+f.Tag.Get("envconfig")] = true
		}
	}
	for name, value := range svc.Environment {
		if !vars[name] {
			t.Errorf("compose sets %s, which the bridge does not read", name)
		}
		t.Setenv(name, value)
	}
	// The NATS files it names do not exist here; none are named.
	cfg, err := loadConfig()
	if err != nil {
		t.Fatalf("the compose environment is not a valid configuration: %v", err)
	}
	if cfg.NATSUser != "customdata-bridge" || cfg.NATSPassword != c.Services["nats"].Environment["NATS_BRIDGE_PASSWORD"] {
		t.Errorf("the bridge connects as %q with a password the server does not have for it", cfg.NATSUser)
	}
	conf, err := os.ReadFile("../../deploy/nats/nats.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`user: customdata-bridge\s+password: \$NATS_BRIDGE_PASSWORD`).Match(conf) {
		t.Error("nats.conf has no customdata-bridge user reading $NATS_BRIDGE_PASSWORD")
	}
	port := func(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }
	for _, addr := range []string{cfg.HTTPAddr, cfg.OpsAddr} {
		found := false
		for _, p := range svc.Ports {
			found = found || strings.HasSuffix(p, ":"+port(addr)+":"+port(addr))
		}
		if !found {
			t.Errorf("compose does not publish port %s (%v)", port(addr), svc.Ports)
		}
	}
	df, err := os.ReadFile("../../" + svc.Build.Dockerfile)
	if err != nil {
		t.Fatalf("the service's Dockerfile: %v", err)
	}
	for _, want := range []string{"./cmd/customdata-bridge", "EXPOSE " + port(cfg.HTTPAddr) + " " + port(cfg.OpsAddr), "USER 65532:65532"} {
		if !strings.Contains(string(df), want) {
			t.Errorf("%s lacks %q", svc.Build.Dockerfile, want)
		}
	}
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sPod struct {
	SecurityContext struct {
		RunAsNonRoot bool `yaml:"runAsNonRoot"`
		RunAsUser    int  `yaml:"runAsUser"`
	} `yaml:"securityContext"`
	Containers []struct {
		Env []struct {
			Name  string `yaml:"name"`
			Value string `yaml:"value"`
		} `yaml:"env"`
		EnvFrom []struct {
			SecretRef struct {
				Name string `yaml:"name"`
			} `yaml:"secretRef"`
		} `yaml:"envFrom"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		LivenessProbe   *k8sProbe `yaml:"livenessProbe"`
		ReadinessProbe  *k8sProbe `yaml:"readinessProbe"`
		SecurityContext struct {
			AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
			ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
		} `yaml:"securityContext"`
	} `yaml:"containers"`
}

// The manifest's bridge sets only variables the bridge reads, into a
// configuration it accepts, reaches NATS over TLS as its own user, runs
// as the image's numeric user, and probes the ops port the bridge
// listens on by default, at paths the ops server serves.
func TestKubernetesManifestMatchesTheBridge(t *testing.T) {
	f, err := os.Open("../../deploy/kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	secrets := map[string]map[string]string{}
	var pod *k8sPod
	dec := yaml.NewDecoder(f)
	for {
		var o struct {
			Kind     string `yaml:"kind"`
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
			StringData map[string]string `yaml:"stringData"`
			Spec       struct {
				Template struct {
					Spec k8sPod `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("kubernetes.yaml: %v", err)
		}
		if o.Kind == "Secret" {
			secrets[o.Metadata.Name] = o.StringData
		}
		if o.Kind == "Deployment" && o.Metadata.Name == "customdata-bridge" {
			pod = &o.Spec.Template.Spec
		}
	}
	if pod == nil || len(pod.Containers) != 1 {
		t.Fatalf("no customdata-bridge Deployment with one container")
	}
	if !pod.SecurityContext.RunAsNonRoot || pod.SecurityContext.RunAsUser != 65532 {
		t.Errorf("pod securityContext %+v, want runAsNonRoot as the image's USER 65532", pod.SecurityContext)
	}
	c := pod.Containers[0]
	if sc := c.SecurityContext; sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || !sc.ReadOnlyRootFilesystem {
		t.Errorf("container securityContext %+v", sc)
	}
	vars := map[string]bool{}
	typ := reflect.TypeOf(Config{})
	for _, f := range reflect.VisibleFields(typ) { // natsconn.Env's fields too
		if !f.Anonymous {
			vars[envPrefix+"_"+f.Tag.Get("envconfig")] = true
		}
	}
	set := map[string]string{}
	for _, from := range c.EnvFrom {
		s, ok := secrets[from.SecretRef.Name]
		if !ok {
			t.Errorf("envFrom names Secret %s, which the manifest does not define", from.SecretRef.Name)
		}
		for k, v := range s {
			set[k] = v
		}
	}
	for _, e := range c.Env {
		set[e.Name] = e.Value
	}
	for name, value := range set {
		if !vars[name] {
			t.Errorf("the manifest sets %s, which the bridge does not read", name)
		}
		if name != envPrefix+"_NATS_TLS_CA" { // a mounted file, not here
			t.Setenv(name, value)
		}
	}
	if !strings.HasPrefix(set[envPrefix+"_NATS_URL"], "tls://") || set[envPrefix+"_NATS_TLS_CA"] == "" || set[envPrefix+"_NATS_USER"] != "customdata-bridge" {
		t.Errorf("NATS %q as %q with CA %q: want TLS as user customdata-bridge", set[envPrefix+"_NATS_URL"], set[envPrefix+"_NATS_USER"], set[envPrefix+"_NATS_TLS_CA"])
	}
	// The placeholder secret (CHANGE-ME) is no base64 key; with a real one
	// the configuration loads.
	t.Setenv(envPrefix+"_SUPABASE_HOOK_SECRETS", "v1,whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatalf("the manifest's environment is not a valid configuration: %v", err)
	}
	ports := map[string]string{}
	for _, p := range c.Ports {
		ports[p.Name] = strconv.Itoa(p.ContainerPort)
	}
	if !strings.HasSuffix(cfg.HTTPAddr, ":"+ports["hooks"]) || !strings.HasSuffix(cfg.OpsAddr, ":"+ports["ops"]) {
		t.Errorf("container ports %v, the bridge listens on %s (hooks) and %s (ops)", ports, cfg.HTTPAddr, cfg.OpsAddr)
	}
	for name, probe := range map[string]*k8sProbe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if probe == nil || probe.HTTPGet.Port != "ops" {
			t.Errorf("%s probe %+v, want an httpGet on port ops", name, probe)
			continue
		}
		if code := opsStatus(t, probe.HTTPGet.Path); code != http.StatusOK {
			t.Errorf("%s probe %s: the ops server answers %d", name, probe.HTTPGet.Path, code)
		}
	}
}

// opsStatus is the status the ops server (all checks passing) answers for
// path.
func opsStatus(t *testing.T, path string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := ops.NewServer("", prometheus.NewRegistry(), zerolog.Nop())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://%s%s", ln.Addr(), path))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
