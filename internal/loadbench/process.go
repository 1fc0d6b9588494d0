package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// proc is a child process whose stdout and stderr go to a log file.
type proc struct {
	name  string
	cmd   *exec.Cmd
	log   string
	done  chan struct{}
	err   error // valid once done is closed
	stdin io.WriteCloser
}

// startProc starts path with args and env; with withStdin the caller gets
// a pipe to its stdin, and its stdout is returned for reading.
func startProc(name, path string, args, env []string, logDir string, withStdin bool) (*proc, io.Reader, error) {
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, nil, fmt.Errorf("log file for %s: %w", name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = env
	// A harness killed outright must not leave servers and workers behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.Stderr = logFile
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	var stdout io.Reader
	if withStdin {
		if p.stdin, err = cmd.StdinPipe(); err != nil {
			logFile.Close()
			return nil, nil, fmt.Errorf("stdin of %s: %w", name, err)
		}
		if stdout, err = cmd.StdoutPipe(); err != nil {
			logFile.Close()
			return nil, nil, fmt.Errorf("stdout of %s: %w", name, err)
		}
	} else {
		cmd.Stdout = logFile
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, nil, fmt.Errorf("start %s (%s): %w", name, path, err)
	}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, stdout, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to stop (SIGTERM, or closing stdin for a process
// that reads it), waits up to grace, then kills it. It returns the exit
// code, or -1 when the process had to be killed.
func (p *proc) stop(grace time.Duration) int {
	if p.stdin != nil {
		// A process that reads stdin exits at its end; give it the chance.
		_ = p.stdin.Close()
		select {
		case <-p.done:
		case <-time.After(grace / 2):
		}
	}
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// logTail returns the last lines of the process's log, for error messages.
func (p *proc) logTail() string {
	data, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// natsServer is a nats-server process with JetStream on disk.
type natsServer struct {
	*proc
	url     string
	version string
}

// startNATS runs nats-server on a random loopback port with its JetStream
// store in dir, and waits for its ports file.
func startNATS(ctx context.Context, bin, dir string) (*natsServer, error) {
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --version (run `make bench`, which installs it, or set NATS_SERVER_BIN): %w", bin, err)
	}
	p, _, err := startProc("nats-server", bin, []string{
		"-a", "127.0.0.1", "-p", "-1",
		"-js", "-sd", filepath.Join(dir, "jetstream"),
		"--ports_file_dir", dir,
	}, os.Environ(), dir, false)
	if err != nil {
		return nil, err
	}
	s := &natsServer{proc: p, version: strings.TrimPrefix(strings.TrimSpace(string(out)), "nats-server: ")}
	portsFile := filepath.Join(dir, fmt.Sprintf("%s_%d.ports", filepath.Base(bin), p.pid()))
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			return nil, fmt.Errorf("nats-server: %w:\n%s", errExited, p.logTail())
		}
		data, err := os.ReadFile(portsFile)
		if err == nil && len(bytes.TrimSpace(data)) > 0 {
			var ports struct {
				Client []string `json:"nats"`
			}
			if err := json.Unmarshal(data, &ports); err == nil && len(ports.Client) > 0 {
				s.url = ports.Client[0]
				return s, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.stop(5 * time.Second)
	return nil, fmt.Errorf("nats-server wrote no ports file %s within 30s:\n%s", portsFile, p.logTail())
}
