// Command reference-issuer is a small, reference token issuer: it shows how
// an issuer uses package issuer to put always-fresh custom user data in
// signed tokens. It is a reference, not a product: POST /login trusts the
// user id it is given (it stands in for your auth service's login).
//
//	POST /login {"userId": "…", "provider": "…"}  publish LOGIN, return a token
//	POST /refresh (Authorization: Bearer <token>)  return a new token with current data
//	                                               (?force=true re-reads MongoDB)
//	GET  /.well-known/jwks.json                    the verification keys (current, then previous)
//	GET  /livez /readyz /metrics
//
// Usage:
//
//	reference-issuer [run]   serve (configured by ISSUER_* variables)
//	reference-issuer env     list every setting with its default
//	reference-issuer healthcheck  GET its own /readyz (container healthcheck; exit 0 or 1)
//	reference-issuer demo    run NATS, MongoDB (or its stand-in), the worker and the
//	                         issuer, and show custom data flowing into tokens
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
	fs := flag.NewFlagSet("reference-issuer", flag.ContinueOnError)
	workerBin := fs.String("worker", "bin/customdata-worker", "demo: the worker binary to run")
	cmd, rest, code, ok := cli.ParseVerb(fs, args, usage, stderr)
	if !ok {
		return code
	}
	ctx, stop := cli.SignalContext(context.Background())
	defer stop()
	switch cmd {
	case "env":
		var c Config
		if err := cli.PrintEnv(stdout, envPrefix, &c); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	case "help":
		usage(stdout)
		return 0
	case "healthcheck":
		return runHealthcheck(ctx, rest, stdout, stderr)
	case "demo":
		// The demo reads the configuration itself, with its own settings
		// (embedded NATS, a dev signing key) over the environment's.
		if err := runDemo(ctx, *workerBin, stdout, stderr); err != nil {
			fmt.Fprintln(stderr, "demo failed:", err)
			return 1
		}
		return 0
	}
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	switch cmd {
	case "run":
		log := newLogger(cfg, stderr)
		if err := runIssuer(ctx, cfg, log, nil); err != nil {
			log.Error().Err(err).Msg("reference issuer stopped with an error")
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
	fmt.Fprint(w, `reference-issuer: a reference token issuer putting fresh custom user data in signed tokens.

Usage:
  reference-issuer [run]                 serve the token API (ISSUER_* variables)
  reference-issuer env                   list every ISSUER_* setting with its default
  reference-issuer healthcheck           GET its own /readyz on ISSUER_HTTP_ADDR, for a container
                                         healthcheck: exit 0 healthy, 1 not (--path P, --timeout D)
  reference-issuer [-worker BIN] demo    run NATS, MongoDB or the stand-in, the worker (BIN,
                                         default bin/customdata-worker) and this issuer, and
                                         show custom data flowing into tokens
`)
}
