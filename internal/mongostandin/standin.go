// Package mongostandin runs mongo-java-server, an in-memory MongoDB
// stand-in, through the launcher in ./launcher (a small Maven project).
// Integration tests and the demo use it when no MONGODB_URI is given. It
// is a development tool: its change streams differ from real MongoDB (see
// README "Stand-in differences").
package mongostandin

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
	"time"
)

// StandIn controls a running mongo-java-server launcher process.
type StandIn struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	addr   string
	closed bool
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
	return filepath.Join(filepath.Dir(file), "launcher"), nil
}

// Start runs the launcher (building it with Maven first if needed) and
// waits until it listens.
func Start(ctx context.Context) (*StandIn, error) {
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

// Pid is the process id of the stand-in's JVM, so that a benchmark can
// read the CPU time and memory the database side spent.
func (s *StandIn) Pid() int { return s.cmd.Process.Pid }

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
	// Generous: a restart builds a new Netty server in a JVM that CI's
	// parallel test packages can starve for tens of seconds (a 30 s wait
	// once failed an outage test). Nothing here measures time.
	line, err := s.await(2 * time.Minute)
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

// URI is a connection string for the stand-in.
func (s *StandIn) URI() string { return "mongodb://" + s.addr + "/?directConnection=true" }
