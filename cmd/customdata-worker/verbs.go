package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/buildinfo"
	"github.com/customdata-worker/customdata-worker/internal/cli"
	"github.com/customdata-worker/customdata-worker/internal/noticetail"
	"github.com/customdata-worker/customdata-worker/internal/opcheck"
	"github.com/customdata-worker/customdata-worker/worker"
)

// Exit codes of the operator verbs.
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	flagsHeader = "customdata-worker "
)

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(flagsHeader+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args; ok=false means exit with code.
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		return exitUsage, false
	}
	return 0, true
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// runCheck is `check`: the real servers, or with --offline the
// configuration only.
func runCheck(ctx context.Context, cfg Config, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", stderr)
	offline := fs.Bool("offline", false, "validate the configuration and trigger file only; contact no server")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	sample := fs.Int("sample", opcheck.DefaultSample, "read at most this many documents for duplicated user ids and oversize documents (0: none)")
	timeout := fs.Duration("timeout", 5*time.Second, "bound of each connection attempt and check")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *sample == 0 {
		*sample = -1 // opcheck: negative reads none
	}
	set, _, err := triggerSet(cfg)
	ccfg := opcheck.Config{Worker: cfg.workerConfig(set), Sample: *sample, Progress: stderr, Timeout: *timeout}
	var rep opcheck.Report
	if *offline || err != nil {
		rep = opcheck.Offline(ccfg, err)
	} else {
		rep = opcheck.Run(ctx, ccfg)
	}
	if *asJSON {
		_ = rep.WriteJSON(stdout)
	} else {
		_ = rep.WriteText(stdout)
	}
	if !rep.OK {
		return exitFailed
	}
	return exitOK
}

// connectJS connects to NATS as the worker does.
func connectJS(cfg Config) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := worker.ConnectNATS(cfg.workerConfig(nil).NATS, zerolog.Nop())
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// runTail is `tail`: follow notices until interrupted.
func runTail(ctx context.Context, cfg Config, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("tail", stderr)
	since := fs.Duration("since", 0, "start this long ago (e.g. 10m) instead of now")
	user := fs.String("user", "", "only this user's notices (and flush-alls, which concern everyone)")
	limit := fs.Int("n", 0, "stop after this many notices (0: until interrupted)")
	asJSON := fs.Bool("json", false, "one JSON object per notice")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	nc, js, err := connectJS(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailed
	}
	defer nc.Close()
	enc := json.NewEncoder(stdout)
	err = noticetail.Follow(ctx, js, noticetail.Options{
		Stream: cfg.NoticeStream, Prefix: cfg.NoticeSubjectPrefix, Since: *since, UserID: *user, Limit: *limit,
	}, func(l noticetail.Line) error {
		if *asJSON {
			return enc.Encode(l)
		}
		_, err := fmt.Fprintln(stdout, noticetail.Format(l))
		return err
	})
	if err != nil {
		fmt.Fprintln(stderr, "tail:", err)
		return exitFailed
	}
	return exitOK
}

// runPublish is `publish`: one auth event through events.Publisher.
func runPublish(ctx context.Context, cfg Config, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("publish", stderr)
	op := fs.String("op", string(events.OperationLogin), "operation: LOGIN, CREATE or DELETE")
	user := fs.String("user", "", "user id (required)")
	providers := fs.String("provider", "local-userpass", "provider name(s), comma-separated")
	asJSON := fs.Bool("json", false, "print the event and its ack as JSON")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *user == "" {
		fmt.Fprintln(stderr, "publish: --user is required")
		return exitUsage
	}
	nc, js, err := connectJS(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailed
	}
	defer nc.Close()
	opts := []events.PublisherOption{events.WithSubjectPrefix(cfg.AuthSubjectPrefix)}
	if cfg.EventSigningSeed != "" {
		signer, err := events.LoadSigner(cfg.EventSigningSeed)
		if err != nil {
			fmt.Fprintln(stderr, "publish:", err)
			return exitUsage
		}
		opts = append(opts, events.WithSigner(signer))
	}
	pub, err := events.NewPublisher(js, opts...)
	if err != nil {
		fmt.Fprintln(stderr, "publish:", err)
		return exitUsage
	}
	ev := events.NewAuthEvent(events.Operation(strings.ToUpper(*op)), *user, splitList(*providers)...)
	ack, err := pub.Publish(ctx, ev)
	if err != nil {
		fmt.Fprintln(stderr, "publish:", err)
		return exitFailed
	}
	if *asJSON {
		_ = writeJSON(stdout, map[string]any{"event": ev, "stream": ack.Stream, "sequence": ack.Sequence, "duplicate": ack.Duplicate})
		return exitOK
	}
	fmt.Fprintf(stdout, "published %s %s for user %s on %s: stream %s sequence %d\n",
		ev.OperationType, ev.ID, ev.User.ID, events.AuthSubject(cfg.AuthSubjectPrefix, ev.OperationType), ack.Stream, ack.Sequence)
	return exitOK
}

// runVersion is `version`.
func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", stderr)
	asJSON := fs.Bool("json", false, "print as JSON")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	info := buildinfo.Read()
	if *asJSON {
		_ = writeJSON(stdout, info)
		return exitOK
	}
	dirty := ""
	if info.Dirty {
		dirty = " (modified)"
	}
	fmt.Fprintf(stdout, "%s %s\ncommit %s%s\nbuilt %s with %s\n", appName, info.Version, info.Commit, dirty, info.BuildTime, info.GoVersion)
	return exitOK
}

// runHealthcheck is `healthcheck`: the worker's own /readyz on
// CUSTOMDATA_HTTP_ADDR (cli.Healthcheck).
func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.Healthcheck(ctx, appName, args, stdout, stderr, func() (string, error) {
		var c Config
		if err := envconfig.Process(envPrefix, &c); err != nil {
			return "", fmt.Errorf("configuration: %w", err)
		}
		if c.HTTPAddr == "" {
			return "", fmt.Errorf("%s_HTTP_ADDR is empty: the ops endpoints are off", envPrefix)
		}
		return c.HTTPAddr, nil
	})
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseSequences(s string) ([]uint64, error) {
	var out []uint64
	for _, p := range splitList(s) {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("sequence %q is not a positive number", p)
		}
		out = append(out, n)
	}
	return out, nil
}
