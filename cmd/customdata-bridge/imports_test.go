package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The bridge is built on packages issuer and events: neither it nor
// anything it imports is a package of the worker (DEVELOPING.md, import
// direction).
func TestImportsNoWorkerPackage(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "github.com/customdata-worker/customdata-worker/worker" || strings.HasPrefix(p, "github.com/customdata-worker/customdata-worker/worker/") {
			t.Errorf("the bridge imports %s", p)
		}
	}
}
