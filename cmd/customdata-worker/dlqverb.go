package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/customdata-worker/customdata-worker/internal/dlq"
)

const dlqUsage = `Usage: customdata-worker dlq list|show|redrive|purge [flags]
  list      dead letters with reason, user, deliveries, redrives, original subject, error
  show SEQ  one dead letter whole: headers and body
  redrive   send selected dead letters back to their original subject (--seq, --reason or --all)
  purge     delete selected dead letters (--seq, --reason or --all)
`

// runDLQ is `dlq list|show|redrive|purge`.
func runDLQ(ctx context.Context, cfg Config, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, dlqUsage)
		return exitUsage
	}
	sub, args := args[0], args[1:]
	fs := newFlags("dlq "+sub, stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	var (
		reason, user, seqs *string
		since, until       *time.Duration
		all, dryRun        *bool
		limit              *int
	)
	switch sub {
	case "list", "redrive", "purge":
		reason = fs.String("reason", "", "only this Dlq-Reason (e.g. permanent_trigger_error)")
		user = fs.String("user", "", "only this user's events")
		since = fs.Duration("since", 0, "only dead letters younger than this (e.g. 24h)")
		until = fs.Duration("until", 0, "only dead letters older than this")
		seqs = fs.String("seq", "", "only these dead-letter sequences, comma-separated")
		if sub == "list" {
			limit = fs.Int("limit", 1000, "list at most this many (0: all)")
		} else {
			all = fs.Bool("all", false, "select every dead letter (the other filters still apply)")
			dryRun = fs.Bool("dry-run", false, "only print what would be done")
		}
	case "show":
	default:
		fmt.Fprintf(stderr, "unknown dlq command %q\n%s", sub, dlqUsage)
		return exitUsage
	}
	var seqArg []string
	if sub == "show" {
		// show SEQ [--json] or show --json SEQ
		if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
			seqArg, args = args[:1], args[1:]
		}
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	seqArg = append(seqArg, fs.Args()...)
	if sub != "show" && len(seqArg) > 0 {
		fmt.Fprintf(stderr, "unexpected argument %q\n", seqArg[0])
		return exitUsage
	}

	nc, js, err := connectJS(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailed
	}
	defer nc.Close()
	q, err := dlq.New(js, cfg.DeadLetterStream, cfg.DeadLetterPrefix)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailed
	}

	if sub == "show" {
		if len(seqArg) != 1 {
			fmt.Fprintln(stderr, "Usage: customdata-worker dlq show SEQ [--json]")
			return exitUsage
		}
		s, err := parseSequences(seqArg[0])
		if err != nil || len(s) != 1 {
			fmt.Fprintln(stderr, "dlq show:", err)
			return exitUsage
		}
		e, err := q.Get(ctx, s[0])
		if err != nil {
			fmt.Fprintln(stderr, "dlq show:", err)
			return exitFailed
		}
		if *asJSON {
			_ = writeJSON(stdout, dlq.ForJSON(e))
		} else {
			_ = dlq.WriteEntry(stdout, e)
		}
		return exitOK
	}

	f := dlq.Filter{Reason: *reason, UserID: *user}
	now := time.Now()
	if *since > 0 {
		f.Since = now.Add(-*since)
	}
	if *until > 0 {
		f.Until = now.Add(-*until)
	}
	if f.Sequences, err = parseSequences(*seqs); err != nil {
		fmt.Fprintln(stderr, "dlq:", err)
		return exitUsage
	}
	if sub == "list" {
		entries, err := q.List(ctx, f, *limit)
		if err != nil {
			fmt.Fprintln(stderr, "dlq list:", err)
			return exitFailed
		}
		if *asJSON {
			out := make([]dlq.JSONEntry, len(entries))
			for i, e := range entries {
				out[i] = dlq.ForJSON(e)
			}
			_ = writeJSON(stdout, out)
		} else {
			_ = dlq.WriteTable(stdout, entries)
		}
		return exitOK
	}

	f.All = *all
	enc := json.NewEncoder(stdout)
	done, failed := 0, 0
	report := func(o dlq.Outcome) {
		if o.Err != nil {
			failed++
		} else if o.Done {
			done++
		}
		if *asJSON {
			v := struct {
				dlq.Outcome
				Error string `json:"error,omitempty"`
			}{o, ""}
			if o.Err != nil {
				v.Error = o.Err.Error()
			}
			_ = enc.Encode(v)
			return
		}
		fmt.Fprintln(stdout, describeOutcome(sub, *dryRun, o))
	}
	var opErr error
	if sub == "redrive" {
		opErr = q.Redrive(ctx, f, *dryRun, report)
	} else {
		opErr = q.Purge(ctx, f, *dryRun, report)
	}
	switch {
	case errors.Is(opErr, dlq.ErrNoSelection):
		fmt.Fprintf(stderr, "dlq %s: %v (--seq, --reason or --all)\n", sub, opErr)
		return exitUsage
	case opErr != nil:
		fmt.Fprintf(stderr, "dlq %s: %v\n", sub, opErr)
		return exitFailed
	}
	if !*asJSON {
		verb := map[string]string{"redrive": "redriven", "purge": "purged"}[sub]
		if *dryRun {
			fmt.Fprintf(stdout, "dry run: nothing %s\n", verb)
		} else {
			fmt.Fprintf(stdout, "%d %s, %d failed\n", done, verb, failed)
		}
	}
	if failed > 0 {
		return exitFailed
	}
	return exitOK
}

func describeOutcome(sub string, dryRun bool, o dlq.Outcome) string {
	e := o.Entry
	switch {
	case o.Err != nil:
		return fmt.Sprintf("✗ %d (%s, user %s): %v", e.Sequence, e.Reason, dashIfEmpty(e.UserID), o.Err)
	case sub == "purge" && dryRun:
		return fmt.Sprintf("would purge %d (%s, user %s)", e.Sequence, e.Reason, dashIfEmpty(e.UserID))
	case sub == "purge":
		return fmt.Sprintf("✓ purged %d (%s, user %s)", e.Sequence, e.Reason, dashIfEmpty(e.UserID))
	case dryRun:
		return fmt.Sprintf("would redrive %d (%s, user %s) to %s as %s", e.Sequence, e.Reason, dashIfEmpty(e.UserID), o.Subject, o.MsgID)
	}
	return fmt.Sprintf("✓ redrove %d (%s, user %s) to %s as %s", e.Sequence, e.Reason, dashIfEmpty(e.UserID), o.Subject, o.MsgID)
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
