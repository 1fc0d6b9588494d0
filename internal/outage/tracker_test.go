package outage

import (
	"errors"
	"testing"
	"time"
)

func TestTrackerReportsEachTransitionOnce(t *testing.T) {
	var tr Tracker
	now := time.Unix(1_000_000, 0)
	if tr.Known() {
		t.Fatal("known before anything happened")
	}
	if _, _, down := tr.Down(now); down {
		t.Fatal("down before anything happened")
	}
	if _, first := tr.Succeeded(now); !first {
		t.Fatal("the first success is a transition")
	}
	if _, again := tr.Succeeded(now); again {
		t.Fatal("a repeated success is not a transition")
	}
	if !tr.Failed(now, errors.New("down")) || tr.Failed(now.Add(time.Second), errors.New("still down")) {
		t.Fatal("only the first failure begins an outage")
	}
	d, err, down := tr.Down(now.Add(5 * time.Second))
	if !down || d != 5*time.Second || err == nil || err.Error() != "still down" {
		t.Fatalf("Down = %s, %v, %v; want 5s, the last error, true", d, err, down)
	}
	if d, ok := tr.Succeeded(now.Add(12 * time.Second)); !ok || d != 12*time.Second {
		t.Fatalf("recovery = %s, %v; want 12s, true", d, ok)
	}
	tr.Reset()
	if tr.Known() {
		t.Fatal("known after Reset")
	}
}
