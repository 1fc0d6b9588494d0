package main

import (
	"context"
	"fmt"
	"io"

	"github.com/kelseyhightower/envconfig"

	"github.com/customdata-worker/customdata-worker/internal/cli"
)

// runHealthcheck is `healthcheck`: the issuer's own /readyz on ISSUER_HTTP_ADDR
// (cli.Healthcheck). It reads only the environment.
func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.Healthcheck(ctx, appName, args, stdout, stderr, func() (string, error) {
		var c Config
		if err := envconfig.Process(envPrefix, &c); err != nil {
			return "", fmt.Errorf("configuration: %w", err)
		}
		if c.HTTPAddr == "" {
			return "", fmt.Errorf("%s_HTTP_ADDR is empty: nothing listens", envPrefix)
		}
		return c.HTTPAddr, nil
	})
}
