package worker

import (
	"errors"
	"fmt"

	"github.com/customdata-worker/customdata-worker/internal/provision"
	"github.com/customdata-worker/customdata-worker/triggers"
	"github.com/customdata-worker/customdata-worker/worker/authsync"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
	"github.com/customdata-worker/customdata-worker/worker/notify"
)

// Streams are the JetStream settings shared by every stream and bucket the
// worker provisions (auth events, dead letters, notices, checkpoints,
// lease): provision mode (default ProvisionCreate), replicas (1 to 5,
// default 1) and the duplicate window of the streams (default 2m).
type Streams = provision.Streams

// ProvisionMode says what the worker does with its JetStream resources at
// startup: ProvisionCreate or ProvisionVerify.
type ProvisionMode = provision.Mode

// Provision modes.
const (
	// ProvisionCreate creates or updates the streams, consumer and buckets
	// (idempotent). The default.
	ProvisionCreate = provision.Create
	// ProvisionVerify only checks that the resources an operator made
	// exist with compatible settings.
	ProvisionVerify = provision.Verify
)

// Config is everything a Worker needs. Each subsystem's section has its own
// defaults (zero values are replaced by them) and its own Validate.
type Config struct {
	// MongoURI is the MongoDB connection string (never logged unredacted).
	MongoURI string
	// NATS says how to reach NATS; NATS.Name also names the MongoDB client.
	NATS NATSConfig
	// HTTPAddr serves /livez, /readyz and /metrics; empty disables them.
	HTTPAddr string
	// Shared by both flows, set once:
	//  - Data is the custom-data collection (database, collection,
	//    user-id field) and how it is written;
	//  - Streams are the provision mode, replicas and duplicate window of
	//    every stream and bucket the worker uses.
	Data    customdata.Config
	Streams Streams
	// Auth is the auth-event consumer.
	Auth authsync.Config
	// Notices turns the notifier on; Notify configures it.
	Notices bool
	Notify  notify.Config
	// Triggers decides the writes of each auth event. Required.
	Triggers *triggers.Set
}

// Validate checks every section without contacting MongoDB or NATS. Its
// one IO: the driver parses a mongodb+srv URI by looking its SRV and TXT
// records up in DNS (a name that does not resolve is left to the
// connection's retries, not reported).
func (c Config) Validate() error {
	var errs []error
	if c.Triggers == nil {
		errs = append(errs, errors.New("worker: a trigger set is required"))
	} else if err := c.triggersMatchData(); err != nil {
		errs = append(errs, err)
	}
	// The notifier's settings are checked even when it is off, so that
	// turning it on later cannot reveal a mistake made today.
	errs = append(errs, ValidateMongoURI(c.MongoURI), c.NATS.Validate(), c.Data.Validate(), c.Streams.Validate(),
		c.Auth.Validate(), c.Notify.Validate(), c.Notify.ValidateWith(c.Streams), c.Notify.ValidateWithData(c.Data))
	return errors.Join(errs...)
}

// triggersMatchData: triggers checked against one user-id field (so that
// none writes it) must not run on a collection keyed by another.
func (c Config) triggersMatchData() error {
	data := c.Data
	data.SetDefaults()
	if f := c.Triggers.UserIDField(); f != "" && f != data.UserIDField {
		return fmt.Errorf("worker: the triggers' userIdField %q differs from the collection's user-id field %q", f, data.UserIDField)
	}
	return nil
}
