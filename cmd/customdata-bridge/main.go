// Command customdata-bridge puts always-fresh custom user data into the
// tokens of identity servers the team did not write, by answering their
// token-time hooks from a cache kept fresh by the worker's notices, and
// turns their sign-up, login and deletion webhooks into auth events for
// the worker:
//
//	POST /hooks/supabase/custom-access-token   Supabase Auth's custom access token hook
//	POST /hooks/hydra/token                    Ory Hydra's oauth2.token_hook
//	GET  /v1/users/{userId}/custom-data        the document, for any issuer that can call HTTP
//	POST /ingest/clerk                         Clerk's webhooks (Svix): user.created, user.deleted, session.created
//	POST /ingest/kratos/registration, /login   Ory Kratos's web_hook actions after registration and login
//	POST /ingest/auth0                         an Auth0 log stream (custom webhook): s, ss, sdu
//	/livez /readyz /metrics                    on CUSTOMDATA_BRIDGE_OPS_ADDR
//
// Usage:
//
//	customdata-bridge [run]   serve (configured by CUSTOMDATA_BRIDGE_* variables)
//	customdata-bridge env     list every setting with its default
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
	cmd, rest, code, ok := cli.ParseVerb(flag.NewFlagSet(appName, flag.ContinueOnError), args, usage, stderr)
	if !ok {
		return code
	}
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
		ctx, stop := cli.SignalContext(context.Background())
		defer stop()
		return runHealthcheck(ctx, rest, stdout, stderr)
	case "run":
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n", cmd)
		usage(stderr)
		return 2
	}
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	ctx, stop := cli.SignalContext(context.Background())
	defer stop()
	log := newLogger(cfg, stderr)
	if err := runBridge(ctx, cfg, log, nil); err != nil {
		log.Error().Err(err).Msg("bridge stopped with an error")
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprint(w, `customdata-bridge: fresh custom user data in Supabase Auth and Ory Hydra tokens, and over HTTP;
auth events from Clerk, Ory Kratos and Auth0 webhooks.

Usage:
  customdata-bridge [run]   serve the hooks (CUSTOMDATA_BRIDGE_* variables)
  customdata-bridge env     list every CUSTOMDATA_BRIDGE_* setting with its default
  customdata-bridge healthcheck [--path /readyz] [--timeout 3s]
                            GET its own ops endpoint: exit 0 healthy, 1 not (container healthcheck)
`)
}
