// Package noticetail follows the invalidation notices the worker
// publishes, for operators (`customdata-worker tail`): an ordered
// consumer on the notice stream, from now or from a time in the past,
// optionally for one user.
package noticetail

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
)

// Options say what to follow.
type Options struct {
	// Stream and Prefix are the notice stream and subject prefix.
	Stream, Prefix string
	// Since starts this long ago (0: new notices only).
	Since time.Duration
	// UserID follows one user's notices and every flush-all (which
	// concerns every user). Document-only notices name no user and are
	// not shown then.
	UserID string
	// Limit stops after this many notices (0: until ctx ends).
	Limit int
}

// Line is one notice as it was published.
type Line struct {
	Subject  string    `json:"subject"`
	Sequence uint64    `json:"sequence"`
	Time     time.Time `json:"time"`
	// Notice is the decoded notice; Err says why the body could not be
	// decoded (Notice is then zero).
	Notice events.Notice `json:"notice"`
	Err    string        `json:"error,omitempty"`
}

// Follow calls fn for each notice until ctx ends (then it returns nil),
// Limit notices were seen, or fn fails. The leader's heartbeats are no
// notices and are skipped.
func Follow(ctx context.Context, js jetstream.JetStream, opts Options, fn func(Line) error) error {
	if opts.Stream == "" || opts.Prefix == "" {
		return errors.New("noticetail: stream and subject prefix are required")
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{opts.Prefix + ".>"},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	}
	if opts.UserID != "" {
		if err := events.ValidateUserID(opts.UserID); err != nil {
			return fmt.Errorf("user id: %w", err)
		}
		cfg.FilterSubjects = []string{events.UserNoticeSubject(opts.Prefix, opts.UserID), events.FlushAllSubject(opts.Prefix)}
	}
	if opts.Since > 0 {
		start := time.Now().Add(-opts.Since)
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	cons, err := js.OrderedConsumer(ctx, opts.Stream, cfg)
	if err != nil {
		return fmt.Errorf("follow notice stream %s: %w", opts.Stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("follow notice stream %s: %w", opts.Stream, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for seen := 0; opts.Limit == 0 || seen < opts.Limit; seen++ {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return fmt.Errorf("follow notice stream %s: %w", opts.Stream, err)
		}
		if m.Subject() == events.HeartbeatSubject(opts.Prefix) {
			seen-- // the leader's liveness, not a notice
			continue
		}
		line := Line{Subject: m.Subject()}
		if meta, err := m.Metadata(); err == nil {
			line.Sequence, line.Time = meta.Sequence.Stream, meta.Timestamp.UTC()
		}
		if line.Notice, err = events.DecodeNotice(m.Data()); err != nil {
			line.Err = err.Error()
		}
		if err := fn(line); err != nil {
			return err
		}
	}
	return nil
}

// Format is the human form of a line: time, subject, then what changed.
func Format(l Line) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s", l.Time.Format("2006-01-02T15:04:05.000Z07:00"), l.Subject)
	n := l.Notice
	switch {
	case l.Err != "":
		fmt.Fprintf(&b, "  undecodable: %s", l.Err)
	case n.Kind == events.NoticeFlushAll:
		fmt.Fprintf(&b, "  FLUSH ALL reason=%s", n.Reason)
		if n.Operation != "" {
			fmt.Fprintf(&b, " op=%s", n.Operation)
		}
	default:
		fmt.Fprintf(&b, "  user=%s doc=%s op=%s", dash(n.UserID), dash(n.DocumentID), dash(n.Operation))
		if len(n.ChangedFields) > 0 {
			fmt.Fprintf(&b, " fields=%s", strings.Join(n.ChangedFields, ","))
		}
		if n.Oversize {
			b.WriteString(" oversize")
		}
	}
	return b.String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
