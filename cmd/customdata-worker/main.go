// Command customdata-worker keeps custom user data in MongoDB in step with
// authentication events and tells token issuers the moment a user's data
// changes. See README.md.
//
// Usage:
//
//	customdata-worker [run]   run the worker (configured by CUSTOMDATA_* variables)
//	customdata-worker env     list every setting with its default
//	customdata-worker check   check NATS and MongoDB as the worker would use them (--offline: configuration only)
//	customdata-worker tail    follow invalidation notices
//	customdata-worker dlq     list|show|redrive|purge dead-lettered auth events
//	customdata-worker publish publish one auth event (smoke test)
//	customdata-worker version module version, commit and build time
//	customdata-worker healthcheck  GET its own /readyz (container healthcheck; exit 0 or 1)
//	customdata-worker demo    dev demo: embedded NATS, MONGODB_URI or the in-memory stand-in
//
// Subcommands are parsed with the standard library's flag package: the
// worker is configured by environment only and each verb has a few
// flags, which do not justify a CLI framework dependency.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/customdata-worker/customdata-worker/internal/cli"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd, rest, code, ok := cli.ParseVerb(flag.NewFlagSet("customdata-worker", flag.ContinueOnError), args, usage, stderr)
	if !ok {
		return code
	}
	ctx, stop := cli.SignalContext(context.Background())
	defer stop()

	switch cmd {
	case "env":
		printEnv(stdout)
		return 0
	case "help":
		usage(stdout)
		return 0
	case "version":
		return runVersion(rest, stdout, stderr)
	case "healthcheck":
		return runHealthcheck(ctx, rest, stdout, stderr)
	}

	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	switch cmd {
	case "run":
		log := newLogger(cfg, stderr)
		if err := runWorker(ctx, cfg, log); err != nil {
			log.Error().Err(err).Msg("worker stopped with an error")
			return 1
		}
		return 0
	case "check":
		return runCheck(ctx, cfg, rest, stdout, stderr)
	case "tail":
		return runTail(ctx, cfg, rest, stdout, stderr)
	case "dlq":
		return runDLQ(ctx, cfg, rest, stdout, stderr)
	case "publish":
		return runPublish(ctx, cfg, rest, stdout, stderr)
	case "demo":
		if err := runDemo(ctx, cfg, stdout, stderr); err != nil {
			fmt.Fprintln(stderr, "demo failed:", err)
			return 1
		}
		return 0
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n", cmd)
		usage(stderr)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `customdata-worker: apply authentication triggers to custom user data in MongoDB
and publish invalidation notices when it changes.

Usage:
  customdata-worker [run]   run the worker
  customdata-worker env     list every CUSTOMDATA_* setting with its default
  customdata-worker check   connect to NATS and MongoDB and report whether the worker would run
                            (--json, --sample N, --timeout D; --offline: configuration and trigger file only)
  customdata-worker tail    follow invalidation notices (--since D, --user ID, -n N, --json)
  customdata-worker dlq     list|show SEQ|redrive|purge dead-lettered auth events
                            (--reason, --user, --since, --until, --seq; redrive/purge: --all, --dry-run)
  customdata-worker publish publish one auth event for a smoke test (--op, --user, --provider)
  customdata-worker version module version, commit and build time (--json)
  customdata-worker healthcheck  GET its own /readyz on CUSTOMDATA_HTTP_ADDR, for a container
                            healthcheck: exit 0 healthy, 1 not (--path P, --timeout D)
  customdata-worker demo    dev demo on embedded NATS and MONGODB_URI or the stand-in

All configuration comes from the environment; see 'customdata-worker env'.
`)
}

func printEnv(w io.Writer) {
	var c Config
	_ = cli.PrintEnv(w, envPrefix, &c)
}
