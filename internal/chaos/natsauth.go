package chaos

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// The NATS users of a run are deploy/nats/nats.conf's, read from the file
// at every run (not copied: a permission the file lacks shows here), and
// two of the harness's own, in the same account:
const (
	// harnessUser is the harness's observers and checks (stream and
	// consumer info, the dead letters, its own record of the notices, the
	// cluster's probe stream): a user with no permissions block, so
	// everything in the account, as an administrator would be.
	harnessUser        = "chaos-harness"
	harnessPasswordVar = "CHAOS_HARNESS_PASSWORD"
	// routeUser authorizes the cluster's routes (its own block, not an
	// account user).
	routeUser        = "chaos-route"
	routePasswordVar = "CHAOS_ROUTE_PASSWORD"
)

// The deploy file's users each process of the run connects as, as it would
// in production.
const (
	workerUser    = "customdata-worker"
	refIssuerUser = "reference-issuer"
	issuerUser    = "issuer"       // the in-process issuer cache
	producerUser  = "auth-service" // the workload's publishers
)

// natsAuth is the run's NATS users: a password each, random per run, which
// nats-server reads from the variables the file names (as in production)
// and each client is given.
type natsAuth struct {
	text      string            // the file's text with the harness user added
	passwords map[string]string // by variable name
	userVar   map[string]string // variable by user
}

// userEntry matches a user of the file and the variable of its password.
var userEntry = regexp.MustCompile(`(?m)^\s*user:\s*([A-Za-z0-9_-]+)\s*\n\s*password:\s*\$([A-Z_]+)\b`)

// loadNATSAuth reads the nats-server configuration at path (deploy/nats/
// nats.conf) and gives each of its users a password. It fails when the
// file is not shaped as it expects (one users list, each user's password a
// variable), rather than run with users it did not read.
func loadNATSAuth(path string) (*natsAuth, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("NATS users: %w", err)
	}
	text := string(b)
	const list = "users: ["
	if strings.Count(text, list) != 1 {
		return nil, fmt.Errorf("NATS users: %s has %d %q, want one (the account's users)", path, strings.Count(text, list), list)
	}
	a := &natsAuth{passwords: map[string]string{}, userVar: map[string]string{}}
	for _, m := range userEntry.FindAllStringSubmatch(text, -1) {
		a.userVar[m[1]] = m[2]
	}
	vars := regexp.MustCompile(`\$([A-Z_]+_PASSWORD)\b`).FindAllStringSubmatch(text, -1)
	if len(a.userVar) == 0 || len(vars) != len(a.userVar) {
		return nil, fmt.Errorf("NATS users: %s names %d password variables for %d users read (user: …, then password: $…)", path, len(vars), len(a.userVar))
	}
	for _, u := range []string{workerUser, refIssuerUser, issuerUser, producerUser} {
		if a.userVar[u] == "" {
			return nil, fmt.Errorf("NATS users: %s has no user %s", path, u)
		}
	}
	a.userVar[harnessUser] = harnessPasswordVar
	for _, v := range append(mapValues(a.userVar), routePasswordVar) {
		p, err := randomSecret()
		if err != nil {
			return nil, err
		}
		a.passwords[v] = p
	}
	if n := len(storeDir.FindAllString(text, -1)); n != 1 {
		return nil, fmt.Errorf("NATS users: %s has %d store_dir settings, want one (JetStream's)", path, n)
	}
	a.text = strings.Replace(text, list, list+"\n      # Added by internal/chaos for its own checks.\n      { user: "+harnessUser+", password: $"+harnessPasswordVar+" }\n", 1)
	return a, nil
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func randomSecret() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("NATS password: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// serverEnv is what nats-server needs in its environment: every password
// variable the configuration names.
func (a *natsAuth) serverEnv() []string {
	var env []string
	for v, p := range a.passwords {
		env = append(env, v+"="+p)
	}
	return env
}

// storeDir is the file's JetStream store_dir setting, replaced by the
// node's (nats-server refuses -sd beside it).
var storeDir = regexp.MustCompile(`(?m)^(\s*)store_dir:.*$`)

// serverConf is one node's configuration: the file's with store as its
// store directory, and for a cluster node a cluster block whose routes
// log in as routeUser. The listen address, port and server name are the
// command line's.
func (a *natsAuth) serverConf(store, clusterListen string, routes []string) string {
	text := storeDir.ReplaceAllString(a.text, fmt.Sprintf("${1}store_dir: %q", store))
	if clusterListen == "" {
		return text
	}
	var urls []string
	for _, r := range routes {
		urls = append(urls, fmt.Sprintf("%q", "nats-route://"+routeUser+":"+a.passwords[routePasswordVar]+"@"+r))
	}
	return text + fmt.Sprintf(`
# Added by internal/chaos: the cluster of the run.
cluster {
  name: chaos
  listen: %q
  authorization { user: %s, password: $%s }
  routes: [%s]
}
`, clusterListen, routeUser, routePasswordVar, strings.Join(urls, ", "))
}

// password is user's password this run.
func (a *natsAuth) password(user string) string { return a.passwords[a.userVar[user]] }

// inboxPrefix is the only prefix nats.conf lets user receive replies under.
func inboxPrefix(user string) string { return "_INBOX_" + user }

// clientEnv is the settings of a binary (prefix CUSTOMDATA or ISSUER) that
// connects as user.
func (a *natsAuth) clientEnv(prefix, user string) []string {
	return []string{prefix + "_NATS_USER=" + user, prefix + "_NATS_PASSWORD=" + a.password(user), prefix + "_NATS_INBOX_PREFIX=" + inboxPrefix(user)}
}

// connect connects to url as user, with its inbox prefix, reconnecting
// for ever. A permission it is refused shows in the server's log
// (verifyNoViolations).
func (a *natsAuth) connect(url, user string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(200 * time.Millisecond),
		nats.UserInfo(user, a.password(user)), nats.CustomInboxPrefix(inboxPrefix(user)), nats.Name("chaos " + user)}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS as %s: %w", user, err)
	}
	return nc, nil
}
