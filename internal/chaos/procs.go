package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// process is one child process the harness owns; restart starts the same
// command again (same arguments, environment and log file, appended).
type process struct {
	name string
	bin  string
	args []string
	env  []string
	log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	// asked: the harness killed or stopped the running process.
	asked bool
	// unasked: how each exit the harness did not ask for ended.
	unasked []string
}

func newProcess(name, bin string, args, env []string, logDir string) *process {
	return &process{name: name, bin: bin, args: args, env: env, log: filepath.Join(logDir, name+".log")}
}

func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		if !p.asked {
			p.unasked = append(p.unasked, fmt.Sprintf("exited on its own at %s (%v)", time.Now().Format(time.RFC3339), err))
		}
		p.mu.Unlock()
		close(done)
	}()
	p.cmd, p.done, p.asked = cmd, done, false
	return nil
}

// exits are the exits of the process the harness did not ask for.
func (p *process) exits() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.unasked)
}

// signal sends sig to the running process (no-op when it is not running).
func (p *process) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	return p.cmd.Process.Signal(sig)
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *process) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.asked = true
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT) // a stopped process dies too, but be explicit
	_ = cmd.Process.Kill()
	<-done
}

// stop sends SIGTERM and waits up to grace before SIGKILL.
func (p *process) stop(grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.asked = true
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// exited reports whether the process ended without the harness asking.
func (p *process) exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// panicked reports the first line of a Go panic or fatal error in the log.
func (p *process) panicked() string {
	lines := p.logLines(func(line string) bool {
		return strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ") || strings.Contains(line, "DATA RACE")
	}, 1)
	if len(lines) == 0 {
		return ""
	}
	return lines[0]
}

// logLines returns up to limit lines of the log that match.
func (p *process) logLines(match func(string) bool, limit int) []string {
	f, err := os.Open(p.log)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() && len(out) < limit {
		if line := sc.Text(); match(line) {
			out = append(out, line)
		}
	}
	return out
}

// refusal is a nats-server log line of a client refused: a permission
// (publish, subscribe, reply subject) or a login.
func refusal(line string) bool {
	return strings.Contains(line, " Violation - ") || strings.Contains(line, "Violation for ") || strings.Contains(line, "authentication error")
}

// freePort returns a loopback port nothing listens on right now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// natsProcess is nats-server with JetStream on disk on a fixed port, so a
// restarted server has the same URL.
type natsProcess struct {
	*process
	url   string
	store string
}

// natsCluster is the NATS the run uses: one nats-server, or nodes that
// form a cluster (JetStream clustered: the workers create R3 streams), each
// on fixed ports.
type natsCluster struct {
	nodes []*natsProcess
	url   string // every node's URL, comma-separated
}

// newNATSCluster writes each node's configuration (auth's users and
// permissions; the routes'); nodes read their passwords from their
// environment, as nats.conf asks.
func newNATSCluster(bin, dir string, size int, auth *natsAuth) (*natsCluster, error) {
	env := append(os.Environ(), auth.serverEnv()...)
	writeConf := func(name, text string) (string, error) {
		path := filepath.Join(dir, name+".conf")
		return path, os.WriteFile(path, []byte(text), 0o600)
	}
	if size <= 1 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		store := filepath.Join(dir, "jetstream")
		conf, err := writeConf("nats-server", auth.serverConf(store, "", nil))
		if err != nil {
			return nil, err
		}
		p := newProcess("nats-server", bin, []string{"-c", conf, "-a", "127.0.0.1", "-p", strconv.Itoa(port)}, env, dir)
		n := &natsProcess{process: p, url: fmt.Sprintf("nats://127.0.0.1:%d", port), store: store}
		return &natsCluster{nodes: []*natsProcess{n}, url: n.url}, nil
	}
	ports, routes := make([]int, size), make([]string, size)
	for i := range ports {
		var err error
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
		cport, err := freePort()
		if err != nil {
			return nil, err
		}
		routes[i] = fmt.Sprintf("127.0.0.1:%d", cport)
	}
	c := &natsCluster{}
	var urls []string
	for i := range size {
		name := fmt.Sprintf("nats-%d", i+1)
		store := filepath.Join(dir, "jetstream-"+strconv.Itoa(i+1))
		conf, err := writeConf(name, auth.serverConf(store, routes[i], routes))
		if err != nil {
			return nil, err
		}
		args := []string{"-c", conf, "-a", "127.0.0.1", "-p", strconv.Itoa(ports[i]), "--server_name", name}
		n := &natsProcess{process: newProcess(name, bin, args, env, dir), url: fmt.Sprintf("nats://127.0.0.1:%d", ports[i]), store: store}
		c.nodes = append(c.nodes, n)
		urls = append(urls, n.url)
	}
	c.url = strings.Join(urls, ",")
	return c, nil
}

func (c *natsCluster) clustered() bool { return len(c.nodes) > 1 }

// startAll starts every node, then waits until each accepts connections.
func (c *natsCluster) startAll(ctx context.Context) error {
	for _, n := range c.nodes {
		if err := n.start(); err != nil {
			return err
		}
	}
	for _, n := range c.nodes {
		if err := n.waitListening(ctx); err != nil {
			return err
		}
	}
	return nil
}

// node returns the node named name (a server name), or nil.
func (c *natsCluster) node(name string) *natsProcess {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

func (c *natsCluster) stop(grace time.Duration) {
	for _, n := range c.nodes {
		n.stop(grace)
	}
}

// violations are the refusals in the nodes' logs (up to 10 a node), each
// prefixed with its node.
func (c *natsCluster) violations() []string {
	var out []string
	for _, n := range c.nodes {
		for _, line := range n.logLines(refusal, 10) {
			out = append(out, n.name+": "+line)
		}
	}
	return out
}

func (c *natsCluster) panicked() string {
	for _, n := range c.nodes {
		if line := n.panicked(); line != "" {
			return n.name + ": " + line
		}
	}
	return ""
}

// startAndWait starts the server and waits until it accepts connections.
func (n *natsProcess) startAndWait(ctx context.Context) error {
	if err := n.start(); err != nil {
		return err
	}
	return n.waitListening(ctx)
}

func (n *natsProcess) waitListening(ctx context.Context) error {
	addr := strings.TrimPrefix(n.url, "nats://")
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if n.exited() {
			return errors.New(n.name + " exited at start: see " + n.log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// workerProcess is one replica of the worker binary with its ops endpoint
// on a fixed port.
type workerProcess struct {
	*process
	metricsURL string
}

// streamLeader is the node that leads stream, if the cluster has one.
func (h *harness) streamLeader(ctx context.Context, stream string) *natsProcess {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	s, err := h.js.Stream(ctx, stream)
	if err != nil {
		return nil
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil {
		return nil
	}
	return h.nats.node(info.Cluster.Leader)
}

// replicasCurrent waits up to within until every stream (KV buckets
// included) has a leader and every replica is online and current.
func (h *harness) replicasCurrent(ctx context.Context, within time.Duration) bool {
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if h.allCurrent(ctx) {
			return true
		}
	}
	return false
}

func (h *harness) allCurrent(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	streams := h.js.ListStreams(ctx)
	n := 0
	for info := range streams.Info() {
		n++
		cl := info.Cluster
		if cl == nil || cl.Leader == "" || len(cl.Replicas) != len(h.nats.nodes)-1 {
			return false
		}
		for _, r := range cl.Replicas {
			if !r.Current || r.Offline {
				return false
			}
		}
	}
	return streams.Err() == nil && n > 0
}

// waitForPeers waits until the cluster places a stream on every node: a
// probe stream with as many replicas as nodes is created, then deleted.
func (h *harness) waitForPeers(ctx context.Context, within time.Duration) error {
	var err error
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = h.js.CreateStream(pctx, jetstream.StreamConfig{Name: "CHAOS_PROBE", Subjects: []string{"chaos.probe"},
			Replicas: len(h.nats.nodes), Storage: jetstream.MemoryStorage})
		if err == nil {
			err = h.js.DeleteStream(pctx, "CHAOS_PROBE")
		}
		cancel()
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("the nats-server cluster did not place a stream on all %d nodes within %s: %w", len(h.nats.nodes), within, err)
}
