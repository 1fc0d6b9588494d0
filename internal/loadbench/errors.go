package main

import "errors"

// errNoProcess is returned when a process is gone or has no procfs entry.
var errNoProcess = errors.New("process not found in /proc")

// errExited is returned when a process the benchmark waits on has exited.
var errExited = errors.New("process exited")
