// Package mongodeploy_test reads deploy/mongodb/roles.js and holds it to
// what the code uses, and, with MONGODB_URI, creates its roles on a real
// server and runs the worker and an issuer under them.
package mongodeploy_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/opcheck"
)

// script is roles.js as its declarations give it.
type script struct {
	src string
	// arrays: const NAME = ["a", "b"];
	arrays map[string][]string
	// strings: const NAME = "value";
	strings map[string]string
	// env: const NAME = process.env.VAR || "default";
	env map[string][2]string
	// flags: const NAME = process.env.VAR === "true";
	flags map[string]string
}

var (
	arrayDecl  = regexp.MustCompile(`(?m)^const (\w+) = \[([^\]]*)\];`)
	stringDecl = regexp.MustCompile(`(?m)^const (\w+) = "([^"]*)";`)
	envDecl    = regexp.MustCompile(`(?m)^const (\w+) = process\.env\.(\w+) \|\| "([^"]*)";`)
	flagDecl   = regexp.MustCompile(`(?m)^const (\w+) = process\.env\.(\w+) === "true";`)
	quoted     = regexp.MustCompile(`"([^"]*)"`)
)

func readScript(t *testing.T) script {
	t.Helper()
	b, err := os.ReadFile("roles.js")
	if err != nil {
		t.Fatal(err)
	}
	s := script{src: string(b), arrays: map[string][]string{}, strings: map[string]string{}, env: map[string][2]string{}, flags: map[string]string{}}
	for _, m := range arrayDecl.FindAllStringSubmatch(s.src, -1) {
		var items []string
		for _, q := range quoted.FindAllStringSubmatch(m[2], -1) {
			items = append(items, q[1])
		}
		s.arrays[m[1]] = items
	}
	for _, m := range stringDecl.FindAllStringSubmatch(s.src, -1) {
		s.strings[m[1]] = m[2]
	}
	for _, m := range envDecl.FindAllStringSubmatch(s.src, -1) {
		s.env[m[1]] = [2]string{m[2], m[3]}
	}
	for _, m := range flagDecl.FindAllStringSubmatch(s.src, -1) {
		s.flags[m[1]] = m[2]
	}
	return s
}

func (s script) array(t *testing.T, name string) []string {
	t.Helper()
	a, ok := s.arrays[name]
	if !ok {
		t.Fatalf("roles.js declares no array %s", name)
	}
	return a
}

func (s script) str(t *testing.T, name string) string {
	t.Helper()
	v, ok := s.strings[name]
	if !ok {
		t.Fatalf("roles.js declares no string %s", name)
	}
	return v
}

// workerCollectionActions: the worker's actions on the collection, with
// collMod when pre-images are on, as roles.js composes them.
func (s script) workerCollectionActions(t *testing.T, preImages bool) []string {
	a := slices.Clone(s.array(t, "workerCollectionActions"))
	if preImages {
		a = append(a, s.array(t, "workerPreImageActions")...)
	}
	return a
}

// workerEnv reads the worker's configuration struct from its source:
// variable name (CUSTOMDATA_…) → default.
func workerEnv(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../../cmd/customdata-worker/config.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != "Config" {
			return true
		}
		for _, fld := range ts.Type.(*ast.StructType).Fields.List {
			if fld.Tag == nil {
				continue
			}
			tag, _ := strconv.Unquote(fld.Tag.Value)
			st := reflect.StructTag(tag)
			env["CUSTOMDATA_"+st.Get("envconfig")] = st.Get("default")
		}
		return false
	})
	if len(env) == 0 {
		t.Fatal("no Config struct in cmd/customdata-worker/config.go")
	}
	return env
}

// TestRolesFollowTheCode: the roles grant exactly the actions the code
// uses (opcheck's lists, which check probes and the README names), on
// the worker's database and collection, read from the worker's own
// variables with the worker's defaults; no password is in the file.
func TestRolesFollowTheCode(t *testing.T) {
	s := readScript(t)
	for _, pre := range []bool{false, true} {
		if got, want := s.workerCollectionActions(t, pre), opcheck.CollectionActions(pre); !slices.Equal(got, want) {
			t.Errorf("worker's collection actions (pre-images %v) = %v; the code uses %v", pre, got, want)
		}
	}
	if got, want := s.array(t, "workerDatabaseActions"), opcheck.DatabaseActions(); !slices.Equal(got, want) {
		t.Errorf("worker's database actions = %v; the code uses %v", got, want)
	}
	// issuer.Source reads with FindOne; the cache follows notices on NATS.
	if got := s.array(t, "issuerCollectionActions"); !slices.Equal(got, []string{"find"}) {
		t.Errorf("issuer's actions = %v; it only reads (find)", got)
	}

	env := workerEnv(t)
	for name, want := range map[string]string{"database": events.DefaultDatabase, "collection": events.DefaultCollection} {
		got, ok := s.env[name]
		switch {
		case !ok:
			t.Errorf("roles.js does not read %s from the environment", name)
		case got[1] != want:
			t.Errorf("roles.js: %s defaults to %q, the worker to %q", name, got[1], want)
		case env[got[0]] != want:
			t.Errorf("roles.js reads %s from %s, which is not the worker's variable defaulting to %q (%v)", name, got[0], want, env[got[0]])
		}
	}
	if v := s.flags["preAndPostImages"]; v != "CUSTOMDATA_PRE_AND_POST_IMAGES" {
		t.Errorf("pre-images are read from %q, want CUSTOMDATA_PRE_AND_POST_IMAGES", v)
	} else if _, ok := env[v]; !ok {
		t.Errorf("the worker has no variable %s", v)
	}

	// The privileges: the collection actions on the collection, the
	// database actions on the database resource, collMod only with
	// pre-images.
	for _, want := range []string{
		`{ resource: { db: database, collection: collection }, actions: preAndPostImages ? workerCollectionActions.concat(workerPreImageActions) : workerCollectionActions },`,
		`{ resource: { db: database, collection: "" }, actions: workerDatabaseActions },`,
		`{ resource: { db: database, collection: collection }, actions: issuerCollectionActions },`,
		`ensureRole(workerRole, workerPrivileges);`,
		`ensureRole(issuerRole, issuerPrivileges);`,
		`target.createRole({ role: name, privileges: privileges, roles: [] });`,
		`admin.createUser({ user: name, pwd: password, roles: roles });`,
		`const password = process.env[passwordVariable];`,
	} {
		if !strings.Contains(s.src, want) {
			t.Errorf("roles.js lacks %s", want)
		}
	}
	if regexp.MustCompile("pwd:\\s*[\"'`]").MatchString(s.src) {
		t.Error("roles.js holds a password literal")
	}
	for _, name := range []string{"workerRole", "issuerRole", "workerUser", "issuerUser"} {
		s.str(t, name)
	}
	for _, v := range []string{"MONGODB_WORKER_PASSWORD", "MONGODB_ISSUER_PASSWORD"} {
		if !strings.Contains(s.src, `"`+v+`"`) {
			t.Errorf("roles.js does not read %s", v)
		}
	}
}
