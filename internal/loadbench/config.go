package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// config is every knob of a run, read from the environment so that
// `make bench` needs none and a smoke run overrides a few.
type config struct {
	WorkerBin     string `json:"worker_bin"`
	NATSServerBin string `json:"nats_server_bin"`
	MongoURI      string `json:"-"` // empty: a stand-in per workload
	Out           string `json:"out"`

	// Workloads selects which workloads run, in the fixed order of
	// allWorkloads.
	Workloads []string `json:"workloads"`
	// Events is the size of the distinct and skewed backlogs.
	Events int `json:"events"`
	// SkewedUsers and ZipfS shape the skewed workload.
	SkewedUsers int     `json:"skewed_users"`
	ZipfS       float64 `json:"zipf_s"`
	// Repeat runs each contender of the distinct, skewed and notices
	// workloads this often and keeps the median run (by events/s).
	Repeat int `json:"repeat"`
	// NoticeEvents is the size of the notices on/off backlogs (kept small:
	// the stand-in's change stream rescans its whole oplog every poll).
	NoticeEvents int `json:"notice_events"`
	// BurstEvents is the backlog whose drain gives the peak RSS.
	BurstEvents int `json:"burst_events"`
	// NoticeRate, NoticeSeconds and NoticeP99 define the latency scenario:
	// changes per second, how long each rate step lasts, and the p99 a
	// step must meet (with zero missing) to count as sustained.
	NoticeRate    int           `json:"notice_rate"`
	NoticeSeconds float64       `json:"notice_seconds"`
	NoticeP99     time.Duration `json:"notice_p99_target_ns"`
	// DrainTimeout bounds one contender's drain; NoticeWait bounds the wait
	// for notices after the last change.
	DrainTimeout time.Duration `json:"drain_timeout_ns"`
	NoticeWait   time.Duration `json:"notice_wait_ns"`
}

// Workload names, in the order they run.
const (
	wlDistinct = "distinct"
	wlSkewed   = "skewed"
	wlNotices  = "notices"
	wlLatency  = "latency"
	wlBurst    = "burst"
)

var allWorkloads = []string{wlDistinct, wlSkewed, wlNotices, wlLatency, wlBurst}

func loadConfig() (config, error) {
	c := config{
		WorkerBin:     envString("WORKER_BIN", "bin/customdata-worker"),
		NATSServerBin: envString("NATS_SERVER_BIN", "bin/nats-server"),
		MongoURI:      os.Getenv("MONGODB_URI"),
		Out:           envString("BENCH_OUT", "bench/results"),
	}
	var errs []error
	intVar := func(p *int, name string, def, lo int) {
		v, err := envInt(name, def)
		if err == nil && v < lo {
			err = fmt.Errorf("%s must be at least %d, got %d", name, lo, v)
		}
		errs = append(errs, err)
		*p = v
	}
	intVar(&c.Events, "BENCH_EVENTS", 50_000, 1)
	intVar(&c.SkewedUsers, "BENCH_SKEWED_USERS", 1_000, 2)
	intVar(&c.NoticeEvents, "BENCH_NOTICE_EVENTS", 5_000, 1)
	intVar(&c.BurstEvents, "BENCH_BURST_EVENTS", 100_000, 1)
	intVar(&c.NoticeRate, "BENCH_NOTICE_RATE", 1_000, 1)
	intVar(&c.Repeat, "BENCH_REPEAT", 3, 1)
	var err error
	if c.ZipfS, err = envFloat("BENCH_ZIPF_S", 1.1); err == nil && c.ZipfS <= 1 {
		err = fmt.Errorf("BENCH_ZIPF_S must be above 1, got %g", c.ZipfS)
	}
	errs = append(errs, err)
	if c.NoticeSeconds, err = envFloat("BENCH_NOTICE_SECONDS", 5); err == nil && c.NoticeSeconds <= 0 {
		err = fmt.Errorf("BENCH_NOTICE_SECONDS must be positive, got %g", c.NoticeSeconds)
	}
	errs = append(errs, err)
	durVar := func(p *time.Duration, name string, def time.Duration) {
		v, err := envDuration(name, def)
		if err == nil && v <= 0 {
			err = fmt.Errorf("%s must be positive, got %s", name, v)
		}
		errs = append(errs, err)
		*p = v
	}
	durVar(&c.NoticeP99, "BENCH_NOTICE_P99", 50*time.Millisecond)
	durVar(&c.DrainTimeout, "BENCH_DRAIN_TIMEOUT", 5*time.Minute)
	durVar(&c.NoticeWait, "BENCH_NOTICE_WAIT", 60*time.Second)

	c.Workloads = allWorkloads
	if s := os.Getenv("BENCH_WORKLOADS"); s != "" {
		c.Workloads = nil
		want := map[string]bool{}
		for _, w := range strings.Split(s, ",") {
			want[strings.TrimSpace(w)] = true
		}
		for _, w := range allWorkloads {
			if want[w] {
				c.Workloads = append(c.Workloads, w)
				delete(want, w)
			}
		}
		for w := range want {
			errs = append(errs, fmt.Errorf("BENCH_WORKLOADS: unknown workload %q (known: %s)", w, strings.Join(allWorkloads, ", ")))
		}
	}
	return c, errors.Join(errs...)
}

func (c config) has(workload string) bool {
	for _, w := range c.Workloads {
		if w == workload {
			return true
		}
	}
	return false
}

func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) (int, error) {
	s := os.Getenv(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.Atoi(strings.ReplaceAll(s, "_", ""))
	if err != nil {
		return def, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}

func envFloat(name string, def float64) (float64, error) {
	s := os.Getenv(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return def, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}

func envDuration(name string, def time.Duration) (time.Duration, error) {
	s := os.Getenv(name)
	if s == "" {
		return def, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return def, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}
