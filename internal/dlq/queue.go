package dlq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Queue is the dead-letter stream.
type Queue struct {
	js     jetstream.JetStream
	stream string
	prefix string
}

// New returns the Queue of stream, whose subjects are <prefix>.<reason>.
func New(js jetstream.JetStream, stream, prefix string) (*Queue, error) {
	if js == nil || stream == "" || prefix == "" {
		return nil, errors.New("dlq: JetStream, stream and subject prefix are required")
	}
	return &Queue{js: js, stream: stream, prefix: prefix}, nil
}

// Filter selects dead letters. Zero fields select everything.
type Filter struct {
	// Sequences select these dead letters only.
	Sequences []uint64
	// Reason selects one Dlq-Reason (the last subject token).
	Reason string
	// Since and Until bound the time the event was dead-lettered.
	Since, Until time.Time
	// UserID selects the events of one user.
	UserID string
	// All must be set for redrive and purge when nothing else selects.
	All bool
}

func (f Filter) selects() bool { return len(f.Sequences) > 0 || f.Reason != "" || f.All }

func (f Filter) match(e Entry) bool {
	switch {
	case len(f.Sequences) > 0 && !slices.Contains(f.Sequences, e.Sequence),
		f.Reason != "" && e.Reason != f.Reason,
		!f.Since.IsZero() && e.Time.Before(f.Since),
		!f.Until.IsZero() && e.Time.After(f.Until),
		f.UserID != "" && e.UserID != f.UserID:
		return false
	}
	return true
}

// fetchWait bounds one fetch of the listing; the listing knows from the
// consumer how many messages to expect, so it never waits for new ones.
const fetchWait = 2 * time.Second

// Each calls fn for every dead letter f selects, oldest first, until fn
// returns an error (returned as is). Dead letters added meanwhile are not
// seen.
func (q *Queue) Each(ctx context.Context, f Filter, fn func(Entry) error) error {
	if len(f.Sequences) > 0 {
		for _, seq := range f.Sequences {
			e, err := q.Get(ctx, seq)
			if err != nil {
				return err
			}
			if f.match(e) {
				if err := fn(e); err != nil {
					return err
				}
			}
		}
		return nil
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{q.prefix + ".>"}}
	if f.Reason != "" {
		cfg.FilterSubjects = []string{q.prefix + "." + f.Reason}
	}
	if !f.Since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &f.Since
	}
	cons, err := q.js.OrderedConsumer(ctx, q.stream, cfg)
	if err != nil {
		return fmt.Errorf("read dead-letter stream %s: %w", q.stream, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("read dead-letter stream %s: %w", q.stream, err)
	}
	for pending := info.NumPending; pending > 0; {
		batch, err := cons.Fetch(int(min(pending, 256)), jetstream.FetchMaxWait(fetchWait))
		if err != nil {
			return fmt.Errorf("read dead-letter stream %s: %w", q.stream, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			e, err := entryFromMsg(m)
			if err != nil {
				return err
			}
			meta, _ := m.Metadata()
			pending = meta.NumPending
			if f.match(e) {
				if err := fn(e); err != nil {
					return err
				}
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("read dead-letter stream %s: %w", q.stream, err)
		}
		if got == 0 {
			break // removed meanwhile (purged, aged out)
		}
	}
	return nil
}

// List returns up to limit dead letters f selects (0: no limit), oldest
// first.
func (q *Queue) List(ctx context.Context, f Filter, limit int) ([]Entry, error) {
	var out []Entry
	errEnough := errors.New("enough")
	err := q.Each(ctx, f, func(e Entry) error {
		out = append(out, e)
		if limit > 0 && len(out) >= limit {
			return errEnough
		}
		return nil
	})
	if errors.Is(err, errEnough) {
		err = nil
	}
	return out, err
}

// Get returns the dead letter with sequence seq, or ErrNotFound.
func (q *Queue) Get(ctx context.Context, seq uint64) (Entry, error) {
	s, err := q.js.Stream(ctx, q.stream)
	if err != nil {
		return Entry{}, fmt.Errorf("dead-letter stream %s: %w", q.stream, err)
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Entry{}, fmt.Errorf("%w: %d in %s", ErrNotFound, seq, q.stream)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("dead letter %d in %s: %w", seq, q.stream, err)
	}
	return entryFromRaw(m), nil
}
