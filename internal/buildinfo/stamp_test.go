package buildinfo

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The Makefile's LDFLAGS and both Dockerfiles stamp the same variables of
// this package, and those variables exist (a -X naming a missing variable
// is silently ignored by the linker).
func TestMakefileAndDockerfilesStampTheSameVariables(t *testing.T) {
	const pkg = "github.com/customdata-worker/customdata-worker/internal/buildinfo"
	makefile := read(t, "../../Makefile")
	m := regexp.MustCompile(`(?m)^BUILDINFO\s*:=\s*(\S+)$`).FindStringSubmatch(makefile)
	if m == nil || m[1] != pkg {
		t.Fatalf("Makefile BUILDINFO = %v, want %s", m, pkg)
	}
	ldflags := regexp.MustCompile(`(?m)^LDFLAGS\s*:=\s*(.+)$`).FindStringSubmatch(makefile)
	if ldflags == nil {
		t.Fatal("Makefile has no LDFLAGS variable")
	}
	want := stamped(t, strings.ReplaceAll(ldflags[1], "$(BUILDINFO)", pkg), pkg)
	if !slices.Equal(want, []string{"buildTime", "commit", "version"}) {
		t.Fatalf("Makefile LDFLAGS stamp %v, want buildTime, commit and version (the variables of buildinfo.go)", want)
	}
	if !strings.Contains(makefile, `build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/customdata-worker`) {
		t.Error("make build does not pass $(LDFLAGS) to the worker's build")
	}
	for _, f := range []string{"../../deploy/Dockerfile", "../../deploy/reference-issuer.Dockerfile", "../../deploy/bridge.Dockerfile"} {
		df := read(t, f)
		var build string
		for _, line := range strings.Split(df, "\n") {
			if strings.Contains(line, "go build") {
				build = line
			}
		}
		if got := stamped(t, build, pkg); !slices.Equal(got, want) {
			t.Errorf("%s stamps %v, the Makefile %v", f, got, want)
		}
		for _, arg := range []string{"VERSION", "COMMIT", "BUILD_TIME"} {
			if !regexp.MustCompile(`(?m)^ARG `+arg+`\b`).MatchString(df) || !strings.Contains(build, "${"+arg+"}") {
				t.Errorf("%s: build argument %s is not declared and used by go build", f, arg)
			}
		}
	}
	// The variables exist in this package under those names.
	_, _, _ = version, commit, buildTime
}

func stamped(t *testing.T, flags, pkg string) []string {
	t.Helper()
	var names []string
	for _, m := range regexp.MustCompile(`-X\s+`+regexp.QuoteMeta(pkg)+`\.(\w+)=`).FindAllStringSubmatch(flags, -1) {
		names = append(names, m[1])
	}
	slices.Sort(names)
	return names
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
