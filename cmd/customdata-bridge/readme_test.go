package main

import (
	"os"
	"reflect"
	"regexp"
	"testing"
)

// The README's table of CUSTOMDATA_BRIDGE_* variables lists every setting
// with its default, and nothing else.
func TestREADMEListsEverySetting(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(" + envPrefix + "_[A-Z0-9_]+)` \\| (?:`([^`]*)` )?\\|")
	documented := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		documented[m[1]] = m[2]
	}
	typ := reflect.TypeOf(Config{})
	for _, f := range reflect.VisibleFields(typ) { // natsconn.Env's fields too
		if f.Anonymous {
			continue
		}
		name := envPrefix + "_" + f.Tag.Get("envconfig")
		def, ok := documented[name]
		switch {
		case !ok:
			t.Errorf("README has no row for %s", name)
		case def != f.Tag.Get("default"):
			t.Errorf("README: %s defaults to %q, the code to %q", name, def, f.Tag.Get("default"))
		}
		delete(documented, name)
	}
	for name := range documented {
		t.Errorf("README documents %s, which the bridge does not read", name)
	}
}
