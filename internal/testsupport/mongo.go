package testsupport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Mongo is a MongoDB a test can use: either the replica set named by
// MONGODB_URI, or an in-memory mongo-java-server stand-in started for the
// test binary.
type Mongo struct {
	URI string
	// StandIn is set when the server is the in-memory stand-in; tests that
	// must stop and restart the server need it.
	StandIn *StandIn
}

// StandIn controls a running mongo-java-server launcher process.
type StandIn struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	addr   string
	closed bool
}

var (
	sharedOnce  sync.Once
	sharedMongo *Mongo
	sharedErr   error
)

// MongoDB returns the MongoDB for integration tests. It never skips: with no
// MONGODB_URI and no way to start the stand-in the test fails, loudly.
// The stand-in is shared by every test in the binary (one JVM start);
// tests isolate themselves with a database name from DatabaseName.
func MongoDB(t testing.TB) *Mongo {
	t.Helper()
	if uri := os.Getenv("MONGODB_URI"); uri != "" {
		return &Mongo{URI: uri}
	}
	sharedOnce.Do(func() {
		s, err := StartStandIn(context.Background())
		if err != nil {
			sharedErr = err
			return
		}
		sharedMongo = &Mongo{URI: "mongodb://" + s.Addr() + "/?directConnection=true", StandIn: s}
	})
	if sharedErr != nil {
		t.Fatalf("no MongoDB for integration tests: MONGODB_URI is unset and the stand-in did not start: %v", sharedErr)
	}
	return sharedMongo
}

// PrivateMongoDB starts a stand-in for this test alone (so the test may stop
// and restart it) or, with MONGODB_URI set, returns the shared server.
func PrivateMongoDB(t testing.TB) *Mongo {
	t.Helper()
	if uri := os.Getenv("MONGODB_URI"); uri != "" {
		return &Mongo{URI: uri}
	}
	s, err := StartStandIn(context.Background())
	if err != nil {
		t.Fatalf("start MongoDB stand-in: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return &Mongo{URI: "mongodb://" + s.Addr() + "/?directConnection=true", StandIn: s}
}

// Client connects a driver client for the test and disconnects it at cleanup.
func (m *Mongo) Client(t testing.TB) *mongo.Client {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(m.URI).SetServerSelectionTimeout(10 * time.Second))
	if err != nil {
		t.Fatalf("connect %s: %v", m.URI, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Disconnect(ctx)
	})
	return c
}

// DatabaseName returns a database name unique to the test.
func DatabaseName(t testing.TB) string {
	name := strings.NewReplacer("/", "_", " ", "_", ".", "_").Replace(t.Name())
	if len(name) > 40 {
		name = name[len(name)-40:]
	}
	return fmt.Sprintf("t_%s_%d", name, time.Now().UnixNano()%1_000_000_000)
}

// LauncherDir is where the Maven project of the stand-in launcher lives.
func LauncherDir() (string, error) {
	if d := os.Getenv("MONGO_STANDIN_DIR"); d != "" {
		return d, nil
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the test-support sources")
	}
	return filepath.Join(filepath.Dir(file), "..", "mongostandin", "launcher"), nil
}

// StartStandIn runs the launcher (building it with Maven first if needed) and
// waits until it listens.
func StartStandIn(ctx context.Context) (*StandIn, error) {
	dir, err := LauncherDir()
	if err != nil {
		return nil, err
	}
	jar := filepath.Join(dir, "target", "mongo-standin.jar")
	if _, err := os.Stat(jar); err != nil {
		build := exec.CommandContext(ctx, "mvn", "-q", "-B", "package")
		build.Dir = dir
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build stand-in launcher (mvn package in %s): %w\n%s", dir, err, out)
		}
	}
	cp := jar + string(os.PathListSeparator) + filepath.Join(dir, "target", "lib", "*")
	cmd := exec.Command("java", "-Xss1m", "-cp", cp, "dev.customdata.standin.Launcher")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = io.Discard
	if os.Getenv("MONGO_STANDIN_LOG") != "" {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start java: %w", err)
	}
	s := &StandIn{cmd: cmd, stdin: stdin, lines: make(chan string, 16)}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	line, err := s.await(60 * time.Second)
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	addr, ok := strings.CutPrefix(line, "listening ")
	if !ok {
		_ = s.Close()
		return nil, fmt.Errorf("stand-in said %q, want \"listening ADDR\"", line)
	}
	s.addr = addr
	return s, nil
}

func (s *StandIn) await(d time.Duration) (string, error) {
	select {
	case line, ok := <-s.lines:
		if !ok {
			return "", errors.New("stand-in exited")
		}
		return line, nil
	case <-time.After(d):
		return "", fmt.Errorf("stand-in did not answer within %s", d)
	}
}

// Addr is host:port of the stand-in.
func (s *StandIn) Addr() string { return s.addr }

// Stop makes the server unreachable (connections dropped, port closed) but
// keeps its data, like a MongoDB outage.
func (s *StandIn) Stop() error { return s.command("stop", "stopped") }

// Start brings a stopped server back on the same port with the same data.
func (s *StandIn) Start() error { return s.command("start", "listening "+s.addr) }

func (s *StandIn) command(cmd, want string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := fmt.Fprintln(s.stdin, cmd); err != nil {
		return fmt.Errorf("stand-in %s: %w", cmd, err)
	}
	line, err := s.await(30 * time.Second)
	if err != nil {
		return fmt.Errorf("stand-in %s: %w", cmd, err)
	}
	if line != want {
		return fmt.Errorf("stand-in %s: said %q, want %q", cmd, line, want)
	}
	return nil
}

// Close ends the launcher process.
func (s *StandIn) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	_ = s.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		return <-done
	}
}
