package natsconn

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/customdata-worker/customdata-worker/internal/redact"
)

// ErrClosed: the client gave up on a connection it had made, most often
// because the server refused the credentials twice in a row (a password
// changed and the server reloaded, a JWT expired or revoked); nats.go then
// stops reconnecting. Only a new process (a new connect) can recover, so a
// binary exits on it.
var ErrClosed = errors.New("NATS connection closed for good")

// Watch returns nil when ctx ends, or ClosedError(nc) as soon as nc is
// closed while ctx lives. It keeps the closed handler already set (the
// log line of Connect) and chains its own behind it, so call it before any
// other code replaces the handler, and only once per connection.
func Watch(ctx context.Context, nc *nats.Conn) error {
	closed := make(chan struct{})
	var once sync.Once
	done := func() { once.Do(func() { close(closed) }) }
	prev := nc.ClosedHandler()
	nc.SetClosedHandler(func(c *nats.Conn) {
		if prev != nil {
			prev(c)
		}
		done()
	})
	if nc.IsClosed() { // closed before the handler was set
		done()
	}
	select {
	case <-ctx.Done():
		return nil
	case <-closed:
		if ctx.Err() != nil {
			return nil // closed by the shutdown itself
		}
		return ClosedError(nc)
	}
}

// ClosedError is ErrClosed with the cause the client last saw (e.g.
// "nats: authorization violation"), wrapped so that errors.Is finds it
// and Refused is true for a refusal. Secrets the connection holds are cut.
func ClosedError(nc *nats.Conn) error {
	last := nc.LastError()
	if last == nil {
		return ErrClosed
	}
	o := nc.Opts
	secrets := append(redact.SecretsOfURIs(strings.Join(append([]string{o.Url}, o.Servers...), ",")), o.Password, o.Token)
	if authRefused(last) {
		return redact.Err(fmt.Errorf("%w: NATS refused the credentials: %w", ErrClosed, last), secrets...)
	}
	return redact.Err(fmt.Errorf("%w: %w", ErrClosed, last), secrets...)
}
