package testsupport

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The worker binary end-to-end tests run as a process, built once per test
// binary (a test process builds it at most once, whichever test asks first).
var worker struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// WorkerBinary builds cmd/customdata-worker once per test binary and
// returns its path. A TestMain calling RunRemovingBuilds removes it.
func WorkerBinary(t testing.TB) string {
	t.Helper()
	worker.once.Do(func() {
		if worker.dir, worker.err = os.MkdirTemp("", "e2e-worker-*"); worker.err != nil {
			return
		}
		worker.path = filepath.Join(worker.dir, "customdata-worker")
		out, err := exec.Command("go", "build", "-o", worker.path, "github.com/customdata-worker/customdata-worker/cmd/customdata-worker").CombinedOutput()
		if err != nil {
			worker.err = fmt.Errorf("go build the worker: %v\n%s", err, out)
		}
	})
	if worker.err != nil {
		t.Fatal(worker.err)
	}
	return worker.path
}

// RunRemovingBuilds runs the tests, then removes what WorkerBinary built:
// `os.Exit(testsupport.RunRemovingBuilds(m))` in a TestMain.
func RunRemovingBuilds(m *testing.M) int {
	code := m.Run()
	if worker.dir != "" {
		_ = os.RemoveAll(worker.dir)
	}
	return code
}

// StartWorker runs the worker binary (`run`) with env added to the test's
// environment. At cleanup it is stopped with SIGTERM (killed after 20 s)
// and must exit cleanly; its logs are shown when the test failed.
func StartWorker(t *testing.T, env map[string]string) *Logs {
	t.Helper()
	logs := &Logs{}
	cmd := exec.Command(WorkerBinary(t), "run")
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker: %v", err)
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("worker did not stop within 20s: %v", <-done)
		}
		if t.Failed() {
			t.Logf("worker logs:\n%s", logs.String())
		}
	})
	return logs
}
