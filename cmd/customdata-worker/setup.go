package main

import (
	"os"

	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/internal/embeddednats"
	"github.com/customdata-worker/customdata-worker/triggers"
)

// triggerSet builds the trigger set from the trigger file (or defaults).
func triggerSet(cfg Config) (*triggers.Set, triggers.Config, error) {
	tc := triggers.DefaultConfig()
	if cfg.TriggersFile != "" {
		var err error
		if tc, err = triggers.LoadConfig(cfg.TriggersFile); err != nil {
			return nil, tc, err
		}
	}
	if tc.UserIDField == "" {
		tc.UserIDField = cfg.UserIDField
	}
	// A file naming another field than USER_ID_FIELD is refused by
	// worker.New (Config.Validate), for embedders too.
	set, err := triggers.NewSet(tc)
	return set, tc, err
}

// startEmbeddedNATS runs a dev NATS server in the process and points cfg at
// it; the returned func shuts it down.
func startEmbeddedNATS(cfg *Config, log zerolog.Logger) (func(), error) {
	dir, cleanup := cfg.NATSEmbeddedDir, func() {}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "customdata-nats-*")
		if err != nil {
			return nil, err
		}
		dir, cleanup = tmp, func() { _ = os.RemoveAll(tmp) }
	}
	s, err := embeddednats.Start(embeddednats.Options{StoreDir: dir})
	if err != nil {
		cleanup()
		return nil, err
	}
	cfg.NATSURL = s.ClientURL()
	log.Warn().Str("url", cfg.NATSURL).Str("store", dir).Msg("running an embedded NATS server: for development only")
	return func() { s.Shutdown(); s.WaitForShutdown(); cleanup() }, nil
}
