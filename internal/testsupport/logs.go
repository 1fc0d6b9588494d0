package testsupport

import (
	"bytes"
	"strings"
	"sync"
)

// Logs collects log output written from several goroutines (a worker's
// zerolog writer) for a test to read.
type Logs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Count is how often s was written so far.
func (l *Logs) Count(s string) int { return strings.Count(l.String(), s) }
