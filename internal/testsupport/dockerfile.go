package testsupport

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// Dockerfile is what tests check of a Dockerfile's final stage.
type Dockerfile struct {
	// Entrypoint is the exec-form ENTRYPOINT.
	Entrypoint []string
	// Expose lists the EXPOSEd ports.
	Expose []string
	// Healthcheck is the exec-form command of HEALTHCHECK … CMD [...],
	// HealthcheckOptions its options (--timeout=5s: "timeout" → "5s").
	Healthcheck        []string
	HealthcheckOptions map[string]string
}

var healthcheckLine = regexp.MustCompile(`^HEALTHCHECK((?:\s+--[a-z-]+=\S+)*)\s+CMD\s+(\[.*\])$`)

// ReadDockerfile reads path's final stage (after its last FROM). Shell
// forms of ENTRYPOINT and HEALTHCHECK fail the test: a distroless image
// has no shell to run them.
func ReadDockerfile(t testing.TB, path string) Dockerfile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d Dockerfile
	execForm := func(what, s string) []string {
		var v []string
		if err := json.Unmarshal([]byte(s), &v); err != nil || len(v) == 0 {
			t.Fatalf("%s: %s %s is not in exec form (a JSON array): %v", path, what, s, err)
		}
		return v
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		word, rest, _ := strings.Cut(line, " ")
		switch word {
		case "FROM":
			d = Dockerfile{}
		case "ENTRYPOINT":
			d.Entrypoint = execForm(word, strings.TrimSpace(rest))
		case "EXPOSE":
			d.Expose = append(d.Expose, strings.Fields(rest)...)
		case "HEALTHCHECK":
			m := healthcheckLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("%s: %q is not HEALTHCHECK [--option=value …] CMD [exec form]", path, line)
			}
			d.Healthcheck = execForm(word, m[2])
			d.HealthcheckOptions = map[string]string{}
			for _, opt := range strings.Fields(m[1]) {
				k, v, _ := strings.Cut(strings.TrimPrefix(opt, "--"), "=")
				d.HealthcheckOptions[k] = v
			}
		}
	}
	return d
}
