// Package cli holds what the project's binaries share around their
// configuration: the logger built from LOG_LEVEL / LOG_FORMAT, and the
// `env` listing of every setting. Each binary keeps its own settings.
package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/rs/zerolog"
)

// NewLogger returns a JSON logger (or a human-readable one for format
// "console") at level, "info" when level is empty or unknown, with a
// timestamp and the app's name on every line.
func NewLogger(w io.Writer, app, level, format string) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || lvl == zerolog.NoLevel {
		lvl = zerolog.InfoLevel
	}
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Str("app", app).Logger()
}

// PrintEnv lists every setting of spec (an envconfig struct pointer) under
// prefix as a table: variable, default, description.
func PrintEnv(w io.Writer, prefix string, spec any) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tDESCRIPTION")
	const format = "{{range .}}{{usage_key .}}\t{{usage_default .}}\t{{usage_description .}}\n{{end}}"
	if err := envconfig.Usagef(prefix, spec, tw, format); err != nil {
		return fmt.Errorf("listing settings: %w", err)
	}
	return tw.Flush()
}
