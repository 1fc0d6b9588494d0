package main

import (
	"strings"
	"testing"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// The README's table of CUSTOMDATA_* variables lists every setting with
// its default and the description `env` prints, and nothing else.
func TestREADMEListsEverySetting(t *testing.T) {
	bridge := func(name string) bool { return strings.HasPrefix(name, envPrefix+"_BRIDGE_") } // the bridge's own table
	testsupport.CheckREADMESettings(t, "../../README.md", envPrefix, Config{}, bridge)
}
