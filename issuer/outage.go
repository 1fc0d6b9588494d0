package issuer

import "time"

// outage is what Run has said about the current spell of not following.
type outage struct {
	since, logged time.Time // zero: not down
	attempts      int       // failed attempts to follow since
}

// logOutage logs a failed attempt to follow: the first of an outage at
// once, then the latest failure at most every stillDownEvery, so an
// operator sees why it still fails (the cause may change: NATS down, then
// the stream missing, then a refused consumer) without a line per retry.
func (c *Cache) logOutage(out *outage, err error, now time.Time) {
	f := c.feed
	out.attempts++
	switch {
	case out.since.IsZero():
		out.since, out.logged = now, now
		c.log.Warn().Err(err).Str("stream", f.cfg.Stream).Str("cache", "reading through to MongoDB, keeping nothing").
			Msg("not following invalidation notices")
	case now.Sub(out.logged) >= f.stillDownInterval():
		out.logged = now
		c.log.Warn().Err(err).Str("stream", f.cfg.Stream).Int("attempts", out.attempts).
			Dur("down_for_ms", now.Sub(out.since)).Str("cache", "reading through to MongoDB, keeping nothing").
			Msg("still unable to follow invalidation notices")
	}
}

func (f *feed) stillDownInterval() time.Duration {
	if f.stillDownEvery > 0 {
		return f.stillDownEvery
	}
	return 30 * time.Second
}
