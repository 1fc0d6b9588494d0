package customdata

import (
	"cmp"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/customdata-worker/customdata-worker/events"
)

// Custom-data defaults.
const (
	DefaultDatabase     = events.DefaultDatabase
	DefaultCollection   = events.DefaultCollection
	DefaultUserIDField  = events.DefaultUserIDField
	DefaultWriteConcern = "majority"
	DefaultWriteTimeout = 10 * time.Second
	DefaultIndexTimeout = 30 * time.Second
	// userIndexCommitQuorum: the unique index is ready once a majority of
	// the data-bearing voting members built it. The server's default,
	// "votingMembers", waits for all of them, indefinitely while one is
	// down; a member that comes back builds the index as it catches up.
	userIndexCommitQuorum = "majority"
)

// Config describes the custom-data collection: one document per
// user, keyed by UserIDField.
//
// When several documents carry the same user id, the one an issuer reads is
// the first inserted, i.e. the lowest _id (ObjectIds grow with insertion
// time), and that is the one the worker writes to.
type Config struct {
	// Database and Collection name the custom-data collection. Defaults
	// "app" and "custom_user_data".
	Database   string
	Collection string
	// UserIDField is the field holding the user id. Default "userId".
	UserIDField string
	// WriteConcern is "majority" (default) or a number of nodes, e.g. "1".
	// Messages are acknowledged only after MongoDB acknowledged the write
	// with this concern. 0 (unacknowledged) is refused.
	WriteConcern string
	// WriteTimeout bounds one write attempt (one BulkWrite, including
	// server selection). Default 10s.
	WriteTimeout time.Duration
	// IndexTimeout bounds one EnsureUserIndex call (listing indexes,
	// building the unique index). Default 30s. It is a client-side bound
	// only: no maxTimeMS is sent, since an interrupted createIndexes aborts
	// the build, while a call that gives up leaves it running on the
	// server, and the next call joins it.
	IndexTimeout time.Duration
	// AllowDuplicates accepts a collection holding several documents for
	// one user: no unique index is created, a warning names samples, and
	// updates resolve the first-inserted document before writing. Off by
	// default: a unique index on UserIDField guarantees one document per user.
	AllowDuplicates bool
}

// SetDefaults replaces zero values by the defaults.
func (c *Config) SetDefaults() {
	c.Database = cmp.Or(c.Database, DefaultDatabase)
	c.Collection = cmp.Or(c.Collection, DefaultCollection)
	c.UserIDField = cmp.Or(c.UserIDField, DefaultUserIDField)
	c.WriteConcern = cmp.Or(c.WriteConcern, DefaultWriteConcern)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, DefaultWriteTimeout)
	c.IndexTimeout = cmp.Or(c.IndexTimeout, DefaultIndexTimeout)
}

// Validate checks the configuration after defaults are applied.
func (c Config) Validate() error {
	c.SetDefaults()
	var errs []error
	if err := ValidateFieldName(c.UserIDField); err != nil {
		errs = append(errs, fmt.Errorf("custom data: user id field: %w", err))
	}
	if _, err := c.writeConcern(); err != nil {
		errs = append(errs, err)
	}
	if c.WriteTimeout < 0 {
		errs = append(errs, errors.New("custom data: write timeout must not be negative"))
	}
	if c.IndexTimeout < 0 {
		errs = append(errs, errors.New("custom data: index timeout must not be negative"))
	}
	return errors.Join(errs...)
}

// ValidateFieldName accepts a top-level field name MongoDB will not read as
// an operator or a path.
func ValidateFieldName(name string) error {
	switch {
	case name == "":
		return errors.New("field name is empty")
	case name == "_id":
		return errors.New("field name must not be _id")
	case strings.HasPrefix(name, "$"), strings.ContainsAny(name, ".\x00"):
		return fmt.Errorf("field name %q must not start with '$' or contain '.' or NUL", name)
	}
	return nil
}

func (c Config) writeConcern() (*writeconcern.WriteConcern, error) {
	if c.WriteConcern == "" || c.WriteConcern == "majority" {
		return writeconcern.Majority(), nil
	}
	n, err := strconv.Atoi(c.WriteConcern)
	if err != nil || n < 1 {
		return nil, fmt.Errorf("custom data: write concern %q: want \"majority\" or a number of nodes >= 1", c.WriteConcern)
	}
	return &writeconcern.WriteConcern{W: n}, nil
}
