package chaos

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestProcessExitsOnItsOwn: a process that ends without the harness
// killing or stopping it is reported (verifyNoPanics fails the run on
// it); one the harness kills, and its restart, are not.
func TestProcessExitsOnItsOwn(t *testing.T) {
	dir := t.TempDir()
	crash := newProcess("crash", "/bin/sh", []string{"-c", "exit 3"}, os.Environ(), dir)
	if err := crash.start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); !crash.exited(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("sh -c 'exit 3' did not exit")
		}
	}
	if exits := crash.exits(); len(exits) != 1 || !strings.Contains(exits[0], "exit status 3") {
		t.Fatalf("exits = %v, want the one exit with its status", exits)
	}

	killed := newProcess("killed", "/bin/sleep", []string{"60"}, os.Environ(), dir)
	for range 2 {
		if err := killed.start(); err != nil {
			t.Fatal(err)
		}
		killed.kill()
	}
	if exits := killed.exits(); len(exits) != 0 {
		t.Fatalf("exits = %v, want none: the harness killed it", exits)
	}
}
