package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// workerProc is the real worker, run as its own process from its binary
// and configured through its documented environment: the demo and the
// end-to-end test use the worker exactly as an operator would, through
// nothing but its public contract.
type workerProc struct {
	cmd  *exec.Cmd
	done chan error
}

// startWorker runs bin with the given CUSTOMDATA_* settings on top of the
// current environment. Stop it with stop.
func startWorker(bin string, env map[string]string, stderr io.Writer) (*workerProc, error) {
	cmd := exec.Command(bin, "run")
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker %s: %w", bin, err)
	}
	w := &workerProc{cmd: cmd, done: make(chan error, 1)}
	go func() { w.done <- cmd.Wait() }()
	return w, nil
}

// stop asks the worker to shut down (SIGTERM: it finishes its batch and
// checkpoints) and kills it if it has not exited within 20s.
func (w *workerProc) stop() error {
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-w.done:
		return err
	case <-time.After(20 * time.Second):
		_ = w.cmd.Process.Kill()
		return fmt.Errorf("worker did not stop within 20s: %w", <-w.done)
	}
}
