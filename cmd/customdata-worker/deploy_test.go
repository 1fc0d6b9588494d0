package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
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
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// Without Docker or a cluster here, the deploy files are checked against
// the code: every variable they set is one the worker reads, the probes
// reach endpoints the ops server serves on the configured port, and the
// pod runs as the numeric user the image declares.

// workerVariables are the CUSTOMDATA_* names the worker reads.
func workerVariables() map[string]bool {
	vars := map[string]bool{}
	typ := reflect.TypeOf(Config{})
	for _, f := range reflect.VisibleFields(typ) { // natsconn.Env's fields too
		if !f.Anonymous {
			vars[envPrefix+"_"+f.Tag.Get("envconfig")] = true
		}
	}
	return vars
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sContainer struct {
	Name string `yaml:"name"`
	Env  []struct {
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
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	Resources struct {
		Limits map[string]string `yaml:"limits"`
	} `yaml:"resources"`
}

type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		Replicas *int `yaml:"replicas"`
		Template struct {
			Spec struct {
				SecurityContext struct {
					RunAsNonRoot bool `yaml:"runAsNonRoot"`
					RunAsUser    *int `yaml:"runAsUser"`
					RunAsGroup   *int `yaml:"runAsGroup"`
				} `yaml:"securityContext"`
				Containers []k8sContainer `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

func k8sObjects(t *testing.T) []k8sObject {
	t.Helper()
	f, err := os.Open("../../deploy/kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var objs []k8sObject
	dec := yaml.NewDecoder(f)
	for {
		var o k8sObject
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			return objs
		} else if err != nil {
			t.Fatalf("kubernetes.yaml: %v", err)
		}
		if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
			t.Fatalf("kubernetes.yaml: an object without apiVersion, kind or name: %+v", o)
		}
		objs = append(objs, o)
	}
}

// rolesJSString is a `const name = "value";` of deploy/mongodb/roles.js.
func rolesJSString(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/mongodb/roles.js")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^const ` + name + ` = "([^"]*)";`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("roles.js declares no %s", name)
	}
	return string(m[1])
}

// imageUser is the numeric USER uid:gid of a Dockerfile.
func imageUser(t *testing.T, path string) (uid, gid int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^USER (\d+):(\d+)\s*$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s: no numeric USER uid:gid (kubelet verifies runAsNonRoot only against numeric ids)", path)
	}
	uid, _ = strconv.Atoi(string(m[1]))
	gid, _ = strconv.Atoi(string(m[2]))
	return uid, gid
}

func TestKubernetesManifestMatchesTheWorker(t *testing.T) {
	vars := workerVariables()
	kinds := map[string]int{}
	secrets := map[string]map[string]string{}
	var deployment *k8sObject
	for _, o := range k8sObjects(t) {
		kinds[o.Kind]++
		if o.Kind == "Secret" {
			secrets[o.Metadata.Name] = o.StringData
		}
		if o.Kind == "Deployment" && o.Metadata.Name == "customdata-worker" { // the bridge's is checked by cmd/customdata-bridge
			deployment = &o
		}
	}
	for _, k := range []string{"Deployment", "Secret", "PodDisruptionBudget", "Service"} {
		if kinds[k] == 0 {
			t.Errorf("kubernetes.yaml has no %s", k)
		}
	}
	if deployment == nil {
		t.Fatal("no Deployment")
	}
	if r := deployment.Spec.Replicas; r == nil || *r < 2 {
		t.Errorf("replicas = %v, want at least 2 (one stands by for the lease)", r)
	}
	pod := deployment.Spec.Template.Spec
	uid, gid := imageUser(t, "../../deploy/Dockerfile")
	if sc := pod.SecurityContext; !sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != uid || sc.RunAsGroup == nil || *sc.RunAsGroup != gid {
		t.Errorf("pod securityContext %+v, want runAsNonRoot with the image's numeric user %d:%d", sc, uid, gid)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if sc := c.SecurityContext; sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || !sc.ReadOnlyRootFilesystem ||
		len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("container securityContext %+v, want no privilege escalation, read-only root, all capabilities dropped", sc)
	}
	if c.Resources.Limits["memory"] == "" {
		t.Error("no memory limit")
	}
	set := map[string]string{}
	for _, e := range c.Env {
		set[e.Name] = e.Value
	}
	for _, from := range c.EnvFrom {
		s, ok := secrets[from.SecretRef.Name]
		if !ok {
			t.Errorf("envFrom names Secret %s, which the manifest does not define", from.SecretRef.Name)
		}
		for k, v := range s {
			set[k] = v
		}
	}
	for name := range set {
		if !vars[name] {
			t.Errorf("the manifest sets %s, which the worker does not read", name)
		}
	}
	if !strings.HasPrefix(set["CUSTOMDATA_NATS_URL"], "tls://") || set["CUSTOMDATA_NATS_TLS_CA"] == "" {
		t.Errorf("NATS URL %q with CA %q: the manifest sends a password, so it must use TLS", set["CUSTOMDATA_NATS_URL"], set["CUSTOMDATA_NATS_TLS_CA"])
	}
	if set["CUSTOMDATA_NATS_USER"] != "customdata-worker" || set["CUSTOMDATA_NATS_PASSWORD"] == "" {
		t.Errorf("NATS user %q: want the worker's user of deploy/nats/nats.conf with a password", set["CUSTOMDATA_NATS_USER"])
	}
	natsUsers := testsupport.NATSConfUsers(t, "../../deploy/nats/nats.conf")
	if p := set["CUSTOMDATA_NATS_INBOX_PREFIX"]; !testsupport.MaySubscribeUnder(natsUsers[set["CUSTOMDATA_NATS_USER"]], p) {
		t.Errorf("inbox prefix %q: not the inbox nats.conf lets %s read, so it would get no replies", p, set["CUSTOMDATA_NATS_USER"])
	}
	mongoURI, err := url.Parse(set["CUSTOMDATA_MONGODB_URI"])
	if err != nil {
		t.Fatalf("CUSTOMDATA_MONGODB_URI: %v", err)
	}
	if u, want := mongoURI.User.Username(), rolesJSString(t, "workerUser"); u != want {
		t.Errorf("MongoDB user %q, want the worker's user %q of deploy/mongodb/roles.js", u, want)
	}

	// The probes reach what the ops server serves, on the port the worker
	// listens on by default.
	port := ""
	for _, p := range c.Ports {
		if p.Name == "ops" {
			port = strconv.Itoa(p.ContainerPort)
		}
	}
	addr, _ := reflect.TypeOf(Config{}).FieldByName("HTTPAddr")
	if want := addr.Tag.Get("default"); set["CUSTOMDATA_HTTP_ADDR"] == "" && want != ":"+port {
		t.Errorf("container port ops = %s, the worker listens on %s", port, want)
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

// opsStatus is the status the worker's ops server (all checks passing)
// answers for path.
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

type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		Ports       []string          `yaml:"ports"`
		Healthcheck *struct {
			Test    any    `yaml:"test"` // a string or a list
			Timeout string `yaml:"timeout"`
		} `yaml:"healthcheck"`
		DependsOn map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
	} `yaml:"services"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

// The compose stack runs NATS on deploy/nats/nats.conf, sets every
// password the file reads, and the worker connects as its own user with
// the password the server was given.
func TestComposeMatchesTheWorkerAndTheNATSConfig(t *testing.T) {
	c := loadCompose(t)
	nats, worker := c.Services["nats"], c.Services["worker"]
	if !strings.Contains(strings.Join(nats.Volumes, " "), "./deploy/nats/nats.conf:/etc/nats/nats.conf") ||
		!strings.Contains(strings.Join(nats.Command, " "), "-c /etc/nats/nats.conf") {
		t.Fatalf("nats service %+v does not run on deploy/nats/nats.conf", nats)
	}
	conf, err := os.ReadFile("../../deploy/nats/nats.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`\$(NATS_[A-Z_]+_PASSWORD)`).FindAllStringSubmatch(string(conf), -1) {
		if nats.Environment[m[1]] == "" {
			t.Errorf("nats.conf reads %s, which the nats service does not set", m[1])
		}
	}
	if nats.Healthcheck == nil {
		t.Error("the nats service has no healthcheck")
	}
	vars := workerVariables()
	for name := range worker.Environment {
		if !vars[name] {
			t.Errorf("compose sets %s for the worker, which it does not read", name)
		}
	}
	if worker.Environment["CUSTOMDATA_NATS_USER"] != "customdata-worker" ||
		worker.Environment["CUSTOMDATA_NATS_PASSWORD"] != nats.Environment["NATS_WORKER_PASSWORD"] {
		t.Errorf("the worker connects as %q with a password the server does not have for it", worker.Environment["CUSTOMDATA_NATS_USER"])
	}
	natsUsers := testsupport.NATSConfUsers(t, "../../deploy/nats/nats.conf")
	if p := worker.Environment["CUSTOMDATA_NATS_INBOX_PREFIX"]; !testsupport.MaySubscribeUnder(natsUsers["customdata-worker"], p) {
		t.Errorf("the worker's inbox prefix %q is not the inbox nats.conf lets it read: it would get no replies", p)
	}
	if d := worker.DependsOn["nats"].Condition; d != "service_healthy" {
		t.Errorf("the worker waits for nats to be %q, want service_healthy", d)
	}
	// The permission tests (deploy/nats) run the nats-server go.mod pins:
	// compose must run the same release line.
	if want := "nats:" + natsServerLine(t) + "-"; !strings.HasPrefix(nats.Image, want) {
		t.Errorf("compose runs %s, want %s… (the nats-server line go.mod pins)", nats.Image, want)
	}
}

// natsServerLine is the major.minor of the nats-server go.mod requires.
func natsServerLine(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/nats-io/nats-server/v2 v(\d+\.\d+)\.`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod does not require github.com/nats-io/nats-server/v2")
	}
	return string(m[1])
}
