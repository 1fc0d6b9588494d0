package cli

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// ParseVerb reads a binary's command line: its own flags (defined on fs
// by the caller), then the verb, "run" when none is given, and the verb's
// arguments. On -h it prints usage to stderr and says to exit 0; on a
// flag mistake (fs printed why) to exit 2; ok is false in both cases.
func ParseVerb(fs *flag.FlagSet, args []string, usage func(io.Writer), stderr io.Writer) (verb string, rest []string, code int, ok bool) {
	fs.SetOutput(stderr)
	fs.Usage = func() { usage(stderr) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", nil, 0, false
		}
		return "", nil, 2, false
	}
	if fs.NArg() == 0 {
		return "run", nil, 0, true
	}
	return fs.Arg(0), fs.Args()[1:], 0, true
}

// SignalContext is ctx cancelled on SIGINT or SIGTERM, which every
// binary takes as "finish what is in flight and stop".
func SignalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}
