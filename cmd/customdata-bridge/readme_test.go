package main

import (
	"testing"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// The README's table of CUSTOMDATA_BRIDGE_* variables lists every setting
// with its default and the description `env` prints, and nothing else.
func TestREADMEListsEverySetting(t *testing.T) {
	testsupport.CheckREADMESettings(t, "../../README.md", envPrefix, Config{}, nil)
}
