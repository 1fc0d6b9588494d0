package main

import (
	"context"
	"fmt"
	"io"

	"github.com/kelseyhightower/envconfig"

	"github.com/customdata-worker/customdata-worker/internal/cli"
)

// runHealthcheck is `healthcheck`: the bridge's own /readyz on CUSTOMDATA_BRIDGE_OPS_ADDR
// (cli.Healthcheck). It reads only the environment.
func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.Healthcheck(ctx, appName, args, stdout, stderr, func() (string, error) {
		var c Config
		if err := envconfig.Process(envPrefix, &c); err != nil {
			return "", fmt.Errorf("configuration: %w", err)
		}
		if c.OpsAddr == "" {
			return "", fmt.Errorf("%s_OPS_ADDR is empty: the ops endpoints are off", envPrefix)
		}
		return c.OpsAddr, nil
	})
}
