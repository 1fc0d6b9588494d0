package bridge

import (
	"cmp"
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/retry"
)

// Publisher publishes auth events: an *events.Publisher.
type Publisher interface {
	Publish(ctx context.Context, ev events.AuthEvent) (*jetstream.PubAck, error)
}

// LoginConfig says which hooks publish LOGIN events (at least one) and
// bounds the queue they wait in.
type LoginConfig struct {
	// Supabase publishes a LOGIN for each Supabase sign-in (every
	// authentication_method but token_refresh); needs WithSupabase.
	Supabase bool
	// Hydra publishes a LOGIN for each Hydra login grant (HydraLoginGrant);
	// needs WithHydra.
	Hydra bool
	// QueueSize is the most LOGINs waiting to be published (default
	// 1024); past it a LOGIN is dropped and counted, never waited for.
	QueueSize int
	// PublishTimeout bounds the attempts to publish one LOGIN (default
	// 30s): it is retried with backoff meanwhile, then counted as failed.
	PublishTimeout time.Duration
}

func (c *LoginConfig) setDefaults() {
	if c.QueueSize == 0 {
		c.QueueSize = 1024
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 30 * time.Second
	}
}

// WithLogins publishes a LOGIN through pub for each login of the hooks
// cfg names (Supabase sign-ins, Hydra login grants) whose hook call was
// answered with the data, so that the worker's LOGIN triggers (lastLogin,
// …) run with nothing else to deploy. Publishing never delays the hook's
// answer: LOGINs wait in a bounded queue that Server.Run works off.
func WithLogins(pub Publisher, cfg LoginConfig) Option {
	return func(s *Server) error {
		if pub == nil {
			return errors.New("bridge: WithLogins: nil publisher")
		}
		if cfg.QueueSize < 0 || cfg.PublishTimeout < 0 {
			return errors.New("bridge: WithLogins: negative queue size or timeout")
		}
		if !cfg.Supabase && !cfg.Hydra {
			return errors.New("bridge: WithLogins: no hook named (LoginConfig.Supabase, LoginConfig.Hydra)")
		}
		cfg.setDefaults()
		s.logins = &loginQueue{pub: pub, cfg: cfg, ch: make(chan events.AuthEvent, cfg.QueueSize)}
		return nil
	}
}

type loginQueue struct {
	pub      Publisher
	cfg      LoginConfig
	ch       chan events.AuthEvent
	log      zerolog.Logger
	m        *metrics
	dropping atomic.Bool // logged once per spell of a full queue
	// attemptLimit bounds one publish attempt (0: loginAttemptTimeout;
	// tests shorten it).
	attemptLimit time.Duration
}

// loginAttemptTimeout bounds one attempt to publish a LOGIN: nats.go's own
// default, which it applies only to a context without a deadline.
const loginAttemptTimeout = 5 * time.Second

// offer queues ev without waiting.
func (q *loginQueue) offer(ev events.AuthEvent) {
	select {
	case q.ch <- ev:
		if q.dropping.CompareAndSwap(true, false) {
			q.log.Info().Msg("LOGIN queue has room again")
		}
	default:
		q.m.logins.WithLabelValues(loginDropped).Inc()
		if !q.dropping.Swap(true) {
			q.log.Warn().Int("queue_size", q.cfg.QueueSize).Str("event_id", ev.ID).
				Msg("LOGIN queue full (NATS slow or down): dropping LOGINs until it drains")
		}
	}
}

// run publishes queued LOGINs until ctx ends, then gives those still
// queued one attempt each within 5 s.
func (q *loginQueue) run(ctx context.Context) {
	for {
		select {
		case ev := <-q.ch:
			q.publish(ctx, ev)
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			for {
				select {
				case ev := <-q.ch:
					q.publish(dctx, ev)
				default:
					return
				}
			}
		}
	}
}

func (q *loginQueue) publish(ctx context.Context, ev events.AuthEvent) {
	pctx, cancel := context.WithTimeout(ctx, q.cfg.PublishTimeout)
	defer cancel()
	attempt := cmp.Or(q.attemptLimit, loginAttemptTimeout)
	_, err := retry.Forever(pctx, retry.NewBackOff(200*time.Millisecond, 5*time.Second), func() (*jetstream.PubAck, error) {
		// Each attempt is bounded: under pctx's deadline nats.go applies
		// no timeout of its own, and one whose ack was lost (in a
		// reconnect) would take all of PublishTimeout, leaving no retry
		// and holding the queue behind it.
		actx, cancel := context.WithTimeout(pctx, attempt)
		defer cancel()
		ack, err := q.pub.Publish(actx, ev)
		if events.ReasonOf(err) != "" {
			return nil, retry.Stop(err)
		}
		return ack, err
	}, func(err error, first bool) {
		if first {
			q.log.Warn().Err(err).Str("event_id", ev.ID).Msg("LOGIN not published yet; retrying")
		}
	})
	switch {
	case err == nil:
		q.m.logins.WithLabelValues(loginPublished).Inc()
	case events.ReasonOf(err) != "":
		q.m.logins.WithLabelValues(loginRejected).Inc()
		q.log.Warn().Str("event_id", ev.ID).Str("reason", string(events.ReasonOf(err))).Msg("LOGIN rejected: not published")
	default:
		q.m.logins.WithLabelValues(loginFailed).Inc()
		q.log.Error().Err(err).Str("event_id", ev.ID).Dur("tried_for", q.cfg.PublishTimeout).Msg("LOGIN not published")
	}
}
