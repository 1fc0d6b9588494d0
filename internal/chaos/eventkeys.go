package chaos

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"

	"github.com/customdata-worker/customdata-worker/events"
)

// eventKeys are the run's event signing keys (README, Signed events): the
// worker replicas trust producer for every operation and refIssuer for
// LOGIN only, the one event the reference issuer publishes; untrusted is
// a key of nobody's, for forged events.
type eventKeys struct {
	producer, refIssuer, untrusted *events.Signer
	// refIssuerSeedFile holds refIssuer's seed, for the reference issuer
	// (ISSUER_EVENT_SIGNING_SEED_FILE).
	refIssuerSeedFile string
}

func newEventKeys(dir string) (*eventKeys, error) {
	k := &eventKeys{refIssuerSeedFile: filepath.Join(dir, "issuer-events.nk")}
	var seeds [3][]byte
	for i, s := range []**events.Signer{&k.producer, &k.refIssuer, &k.untrusted} {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return nil, fmt.Errorf("event signing key: %w", err)
		}
		if seeds[i], err = kp.Seed(); err != nil {
			return nil, fmt.Errorf("event signing key: %w", err)
		}
		if *s, err = events.NewSigner(seeds[i]); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(k.refIssuerSeedFile, seeds[1], 0o600); err != nil {
		return nil, fmt.Errorf("event signing key: %w", err)
	}
	return k, nil
}

// trustedSigners is the replicas' TRUSTED_SIGNERS.
func (k *eventKeys) trustedSigners() string {
	return k.producer.PublicKey() + "," + k.refIssuer.PublicKey() + ":" + string(events.OperationLogin)
}
