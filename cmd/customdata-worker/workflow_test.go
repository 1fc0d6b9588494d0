package main

import (
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type workflow struct {
	Jobs map[string]struct {
		Strategy struct {
			Matrix map[string][]string `yaml:"matrix"`
		} `yaml:"strategy"`
		Env   map[string]string `yaml:"env"`
		Steps []struct {
			Name string            `yaml:"name"`
			Uses string            `yaml:"uses"`
			With map[string]string `yaml:"with"`
			Run  string            `yaml:"run"`
			Env  map[string]string `yaml:"env"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
}

// The GitHub workflow cannot run here; what can be checked is: it runs
// the README's test command with MONGODB_URI naming a replica set, the
// one its step starts and initiates, for MongoDB 6.0, 7.0 and 8.0, on the
// Go of go.mod; and it runs the roles test against a mongod with access
// control, failing if that test skips.
func TestGitHubWorkflowRunsTheSuiteOnRealMongoDB(t *testing.T) {
	b, err := os.ReadFile("../../.github/workflows/test.yml")
	if err != nil {
		t.Fatal(err)
	}
	var wf workflow
	if err := yaml.Unmarshal(b, &wf); err != nil {
		t.Fatalf("test.yml: %v", err)
	}
	job, ok := wf.Jobs["test"]
	if !ok {
		t.Fatal("no job test")
	}
	if got := job.Strategy.Matrix["mongodb"]; !slices.Equal(got, []string{"6.0", "7.0", "8.0"}) {
		t.Errorf("matrix mongodb = %v, want 6.0, 7.0, 8.0", got)
	}

	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	uri := job.Env["MONGODB_URI"]
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "mongodb" {
		t.Fatalf("MONGODB_URI %q: %v", uri, err)
	}
	set := u.Query().Get("replicaSet")
	if set == "" {
		t.Errorf("MONGODB_URI %q names no replicaSet (change streams need one)", uri)
	}
	// The README's command against a real replica set is the same.
	if want := "MONGODB_URI='" + uri + "' make test"; !strings.Contains(string(readme), want) {
		t.Errorf("README does not show %s", want)
	}
	if !regexp.MustCompile("(?m)^make test +# what CI runs").Match(readme) {
		t.Error("README's Testing block does not name make test as what CI runs")
	}

	goMod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(goMod)
	var started, tested, goSet, rolesOK bool
	for _, s := range job.Steps {
		switch {
		case strings.HasPrefix(s.Uses, "actions/setup-java"):
			t.Error("Java is set up: with MONGODB_URI, make test needs no stand-in")
		case strings.HasPrefix(s.Uses, "actions/setup-go"):
			goSet = s.With["go-version-file"] == "go.mod" || (goVersion != nil && s.With["go-version"] == string(goVersion[1]))
		case strings.TrimSpace(s.Run) == "make test":
			if !started {
				t.Error("make test runs before MongoDB is started")
			}
			tested = true
		case strings.Contains(s.Run, "--replSet "+set+" "):
			started = strings.Contains(s.Run, `"mongo:${{ matrix.mongodb }}"`) &&
				strings.Contains(s.Run, "-p "+u.Port()+":"+u.Port()) &&
				strings.Contains(s.Run, "rs.initiate({_id: '"+set+"', members: [{_id: 0, host: '"+u.Host+"'}]})")
			if !started {
				t.Errorf("step %q does not start mongo:<matrix version> with --replSet %s on port %s and initiate it with member %s", s.Name, set, u.Port(), u.Host)
			}
		case strings.Contains(s.Run, "-run '^TestRolesOnMongoDB$'"):
			rolesOK = strings.Contains(s.Run, `MONGODB_URI="$ROLES_MONGODB_URI"`) && strings.Contains(s.Run, "--- SKIP") && strings.Contains(s.Run, "exit 1")
		}
	}
	if !goSet {
		t.Errorf("Go is not set up from go.mod (go %s)", goVersion[1])
	}
	if !tested {
		t.Error("no step runs make test")
	}
	if !rolesOK {
		t.Error("no step runs TestRolesOnMongoDB against ROLES_MONGODB_URI, failing if it skips")
	}
	if !strings.Contains(string(b), "--keyFile /etc/mongo-keyfile") || !strings.Contains(string(b), `ROLES_MONGODB_URI=`) {
		t.Error("the roles test's mongod does not run with a keyFile (access control)")
	}
}
