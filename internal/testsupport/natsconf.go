package testsupport

import (
	"os"
	"regexp"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSConfUsers reads a nats-server configuration file as the server does,
// with each $…_PASSWORD variable it names set to a placeholder, and returns
// its users' permissions by user name.
func NATSConfUsers(t *testing.T, path string) map[string]*server.Permissions {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`\$([A-Z_]+_PASSWORD)\b`).FindAllStringSubmatch(string(b), -1) {
		t.Setenv(m[1], "placeholder-"+m[1])
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	users := map[string]*server.Permissions{}
	for _, u := range opts.Users {
		users[u.Username] = u.Permissions
	}
	return users
}

// MaySubscribeUnder reports whether perms let a client subscribe to
// prefix+".>", its replies' subjects with that inbox prefix, exactly as
// allowed (the configuration names the inbox itself, not a wider pattern).
func MaySubscribeUnder(perms *server.Permissions, prefix string) bool {
	if perms == nil || perms.Subscribe == nil || prefix == "" {
		return false
	}
	for _, a := range perms.Subscribe.Allow {
		if a == prefix+".>" {
			return true
		}
	}
	return false
}
