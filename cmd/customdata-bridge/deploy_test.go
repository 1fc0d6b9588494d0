package main

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
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
	for i := range typ.NumField() {
		vars[envPrefix+"_"+typ.Field(i).Tag.Get("envconfig")] = true
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
