package testsupport

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// READMESetting is one row of a README settings table.
type READMESetting struct {
	Default     string
	Description string // without Markdown: backticks, \| escapes and link targets removed
}

var (
	settingRow = regexp.MustCompile("(?m)^\\| `([A-Z][A-Z0-9_]+)` \\| (?:`([^`]*)` )?\\| (.*) \\|$")
	mdLink     = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
)

// READMESettings reads the rows of readme's settings tables whose
// variable starts with prefix+"_".
func READMESettings(t testing.TB, readme, prefix string) map[string]READMESetting {
	t.Helper()
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]READMESetting{}
	for _, m := range settingRow.FindAllStringSubmatch(string(b), -1) {
		if !strings.HasPrefix(m[1], prefix+"_") {
			continue
		}
		desc := mdLink.ReplaceAllString(m[3], "$1")
		desc = strings.ReplaceAll(strings.ReplaceAll(desc, "`", ""), `\|`, "|")
		rows[m[1]] = READMESetting{Default: m[2], Description: desc}
	}
	return rows
}

// CheckREADMESettings holds the README's table to spec, an envconfig
// struct read under prefix: a row for every setting (embedded structs'
// too) with the code's default and a description that starts with the
// code's (what `env` prints; the README may say more after it), and no
// row for a setting the code does not read. skip leaves out rows of
// another binary that shares the prefix.
func CheckREADMESettings(t *testing.T, readme, prefix string, spec any, skip func(name string) bool) {
	t.Helper()
	documented := READMESettings(t, readme, prefix)
	for name := range documented {
		if skip != nil && skip(name) {
			delete(documented, name)
		}
	}
	for _, f := range reflect.VisibleFields(reflect.TypeOf(spec)) {
		if f.Anonymous {
			continue
		}
		name := prefix + "_" + f.Tag.Get("envconfig")
		row, ok := documented[name]
		switch {
		case !ok:
			t.Errorf("README has no row for %s", name)
		case row.Default != f.Tag.Get("default"):
			t.Errorf("README: %s defaults to %q, the code to %q", name, row.Default, f.Tag.Get("default"))
		case !strings.HasPrefix(row.Description, f.Tag.Get("desc")):
			t.Errorf("README: %s is described as\n\t%q\nbut `env` prints\n\t%q", name, row.Description, f.Tag.Get("desc"))
		}
		delete(documented, name)
	}
	for name := range documented {
		t.Errorf("README documents %s, which the code does not read", name)
	}
}
