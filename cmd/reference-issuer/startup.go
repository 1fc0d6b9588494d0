package main

import (
	"context"
	"net"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/internal/natsconn"
	"github.com/customdata-worker/customdata-worker/internal/redact"
	"github.com/customdata-worker/customdata-worker/internal/retry"
)

// logKeys says which key signs and which previous ones are accepted, and
// warns when the signing key was generated for this run.
func logKeys(log zerolog.Logger, tok *tokens) {
	kids := make([]string, 0, len(tok.keys.public.Keys))
	for _, k := range tok.keys.public.Keys[1:] {
		kids = append(kids, k.KeyID)
	}
	log.Info().Str("kid", tok.kid()).Strs("previous_kids", kids).Msg("signing key loaded")
	if tok.keys.ephemeral {
		log.Warn().Str("kid", tok.kid()).Msg("DEVELOPMENT ONLY: no " + envPrefix + "_SIGNING_KEY_FILE, signing with a key generated for this run " +
			"(" + envPrefix + "_DEV_EPHEMERAL_KEY=true): each replica has its own and tokens die with the process")
	}
}

// warnLoginTrust says loudly, at every start, that /login is not an auth
// service, and louder when it is reachable beyond this host.
func warnLoginTrust(log zerolog.Logger, addr net.Addr) {
	const msg = "POST /login issues a token for ANY user id it is given, without checking who asks: " +
		"this is a reference standing in for your auth service's login, not one"
	if isLoopback(addr) {
		log.Warn().Str("addr", addr.String()).Msg(msg + "; listening on loopback only")
		return
	}
	log.Error().Str("addr", addr.String()).Msg(msg + "; and it LISTENS BEYOND LOOPBACK: anyone who reaches this address can get a token for any user")
}

func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// readinessSecrets are the configured secrets that a readiness error could
// quote (drivers' errors name URIs), cut before /readyz shows it.
func readinessSecrets(cfg Config) []string {
	return append(append(redact.Secrets(cfg.MongoURI), redact.SecretsOfURIs(cfg.NATSURL)...), cfg.NATSToken, cfg.NATSPassword)
}

// connectNATS connects as the worker does: retried with backoff while no
// server answers (the first failure logged once), stopped at a refusal
// (credentials, TLS, an unusable file), which retrying would only hide.
func connectNATS(ctx context.Context, cfg Config, log zerolog.Logger) (*nats.Conn, error) {
	return retry.Forever(ctx, retry.NewBackOff(500*time.Millisecond, 10*time.Second), func() (*nats.Conn, error) {
		nc, err := natsconn.Connect(cfg.natsConfig(), log)
		if natsconn.Refused(err) {
			return nil, retry.Stop(err)
		}
		return nc, err
	}, func(err error, first bool) {
		if first {
			log.Warn().Err(err).Str("step", "connect to NATS").Msg("dependency unavailable; retrying with backoff")
		}
	})
}
