package main

import (
	"os"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The compose stack's reference issuer sets only variables the issuer
// reads, and connects to NATS as its own user of deploy/nats/nats.conf
// with the password the nats service was given.
func TestComposeMatchesTheReferenceIssuer(t *testing.T) {
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{}
	typ := reflect.TypeOf(Config{})
	for i := range typ.NumField() {
		vars[envPrefix+"_"+typ.Field(i).Tag.Get("envconfig")] = true
	}
	env := c.Services["reference-issuer"].Environment
	if len(env) == 0 {
		t.Fatal("no reference-issuer service")
	}
	for name := range env {
		if !vars[name] {
			t.Errorf("compose sets %s, which the reference issuer does not read", name)
		}
	}
	if env["ISSUER_NATS_USER"] != "reference-issuer" || env["ISSUER_NATS_PASSWORD"] != c.Services["nats"].Environment["NATS_REFERENCE_ISSUER_PASSWORD"] {
		t.Errorf("the reference issuer connects as %q with a password the server does not have for it", env["ISSUER_NATS_USER"])
	}
}
