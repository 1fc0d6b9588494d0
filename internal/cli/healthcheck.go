package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/customdata-worker/customdata-worker/internal/ops"
)

// Healthcheck is the binaries' `healthcheck` verb, for container
// healthchecks (the images are distroless: no wget, no curl): GET the
// binary's own ops endpoint (--path, default /readyz) at the address addr
// returns, print one line to stdout, and exit 0 when healthy, 1
// otherwise; never 2, which Docker reserves. addr reads the binary's
// configuration; its error (unreadable settings, ops endpoints off) is
// printed as the reason.
func Healthcheck(ctx context.Context, app string, args []string, stdout, stderr io.Writer, addr func() (string, error)) int {
	fs := flag.NewFlagSet(app+" healthcheck", flag.ContinueOnError)
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
	a, err := addr()
	if err != nil {
		fmt.Fprintf(stdout, "unhealthy: %v\n", err)
		return 1
	}
	line, healthy := ops.Probe(ctx, a, *path, *timeout)
	fmt.Fprintln(stdout, line)
	if !healthy {
		return 1
	}
	return 0
}
