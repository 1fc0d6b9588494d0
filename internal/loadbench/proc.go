package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of utime/stime in /proc/<pid>/stat. The kernel exports
// them in USER_HZ, which is 100 on every Linux architecture Go supports
// (CONFIG_HZ may differ; USER_HZ does not).
const userHZ = 100

// cpuTime is the CPU time (user + system) a process has used so far.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("pid %d: %w", pid, errNoProcess)
		}
		return 0, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	return parseStatCPU(data)
}

// parseStatCPU reads utime + stime from the contents of /proc/<pid>/stat.
// The command name (field 2) is in parentheses and may hold spaces or
// parentheses itself, so fields are counted from the last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, errors.New("malformed /proc stat: no command name")
	}
	// After ") " come field 3 (state), 4 (ppid), … 14 (utime), 15 (stime).
	fields := strings.Fields(string(stat[end+1:]))
	const utimeIdx, stimeIdx = 14 - 3, 15 - 3
	if len(fields) <= stimeIdx {
		return 0, fmt.Errorf("malformed /proc stat: %d fields after the command name", len(fields))
	}
	utime, err := strconv.ParseUint(fields[utimeIdx], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed /proc stat utime: %w", err)
	}
	stime, err := strconv.ParseUint(fields[stimeIdx], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed /proc stat stime: %w", err)
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// peakRSS is the process's peak resident set size so far (VmHWM).
func peakRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("pid %d: %w", pid, errNoProcess)
		}
		return 0, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	defer f.Close()
	return parseStatusKB(f, "VmHWM")
}

// parseStatusKB returns the value of a "Key:   123 kB" line of
// /proc/<pid>/status, in bytes.
func parseStatusKB(f io.Reader, key string) (int64, error) {
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != key {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("malformed /proc status line %q", sc.Text())
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed /proc status line %q: %w", sc.Text(), err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read /proc status: %w", err)
	}
	return 0, fmt.Errorf("no %s in /proc status", key)
}

// systemBusy is the CPU time all processes of the machine have used, from
// the first line of /proc/stat (user, nice, system, irq, softirq, steal).
func systemBusy() (time.Duration, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read /proc/stat: %w", err)
	}
	return parseSystemBusy(data)
}

func parseSystemBusy(stat []byte) (time.Duration, error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0, errors.New("malformed /proc/stat: no cpu line")
	}
	var busy uint64
	// user nice system idle iowait irq softirq steal: skip idle, iowait.
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, err := strconv.ParseUint(fields[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed /proc/stat: %w", err)
		}
		busy += v
	}
	return time.Duration(busy) * time.Second / userHZ, nil
}

// cpuMeter samples the CPU time of a set of named processes at two
// instants, and of the whole machine, so that the CPU other processes
// took meanwhile (other helpers' tests on a shared machine) is known. A
// pid of 0 (a server the benchmark does not own, such as a MONGODB_URI
// replica set) is skipped and reported as unknown.
type cpuMeter struct {
	pids   map[string]int
	start  map[string]time.Duration
	busy   time.Duration
	marked time.Time
}

// othersKey names, in the result of since, the CPU time of every process
// not in the meter's set (the harness itself is always in it).
const othersKey = "others"

func newCPUMeter(pids map[string]int) *cpuMeter {
	m := &cpuMeter{pids: map[string]int{"harness": os.Getpid()}, start: map[string]time.Duration{}}
	for k, v := range pids {
		m.pids[k] = v
	}
	return m
}

// mark records the starting CPU time of every process.
func (m *cpuMeter) mark() {
	for name, pid := range m.pids {
		if pid == 0 {
			continue
		}
		if t, err := cpuTime(pid); err == nil {
			m.start[name] = t
		}
	}
	m.busy, _ = systemBusy()
	m.marked = time.Now()
}

// since returns, per process, the CPU time used since mark; processes
// that could not be read are absent. othersKey holds what the rest of the
// machine used.
func (m *cpuMeter) since() map[string]time.Duration {
	out := map[string]time.Duration{}
	var ours time.Duration
	for name, pid := range m.pids {
		start, ok := m.start[name]
		if !ok {
			continue
		}
		if t, err := cpuTime(pid); err == nil {
			out[name] = t - start
			ours += t - start
		}
	}
	if busy, err := systemBusy(); err == nil && m.busy > 0 {
		out[othersKey] = max(0, busy-m.busy-ours)
	}
	return out
}

// otherLoadPct is the share of the machine's CPU capacity that processes
// outside the benchmark used over wall: 0 on a quiet machine; on a shared
// one it says how far to trust the figures beside it.
func otherLoadPct(cpu map[string]time.Duration, wall time.Duration) *float64 {
	d, ok := cpu[othersKey]
	if !ok || wall <= 0 {
		return nil
	}
	return ptr(100 * d.Seconds() / (wall.Seconds() * float64(runtime.NumCPU())))
}
