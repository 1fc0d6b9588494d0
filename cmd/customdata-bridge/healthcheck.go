package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/kelseyhightower/envconfig"

	"github.com/customdata-worker/customdata-worker/internal/ops"
)

// runHealthcheck is `healthcheck`: GET the bridge's own /readyz (or
// --path) on CUSTOMDATA_BRIDGE_OPS_ADDR and print one line, for the
// container's healthcheck (the image has no wget or curl). It reads only
// the environment and exits 0 when healthy and 1 otherwise, never 2:
// Docker reserves that code.
func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("customdata-bridge healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("path", "/readyz", "endpoint to GET (/livez: the process runs, ready or not)")
	timeout := fs.Duration("timeout", ops.DefaultProbeTimeout, "bound of the whole probe")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 1
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected argument %q\n", fs.Arg(0))
		return 1
	}
	var c Config
	if err := envconfig.Process(envPrefix, &c); err != nil {
		fmt.Fprintf(stdout, "unhealthy: configuration: %v\n", err)
		return 1
	}
	if c.OpsAddr == "" {
		fmt.Fprintf(stdout, "unhealthy: %s_OPS_ADDR is empty: the ops endpoints are off\n", envPrefix)
		return 1
	}
	line, healthy := ops.Probe(ctx, c.OpsAddr, *path, *timeout)
	fmt.Fprintln(stdout, line)
	if !healthy {
		return 1
	}
	return 0
}
