package issuer

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"

	"github.com/customdata-worker/customdata-worker/events"
)

// Defaults shared with the worker (CUSTOMDATA_MONGODB_DATABASE,
// CUSTOMDATA_MONGODB_COLLECTION, CUSTOMDATA_USER_ID_FIELD,
// CUSTOMDATA_OVERSIZE_BYTES).
const (
	DefaultDatabase      = events.DefaultDatabase
	DefaultCollection    = events.DefaultCollection
	DefaultUserIDField   = events.DefaultUserIDField
	DefaultOversizeBytes = events.DefaultOversizeBytes
)

// OversizePolicy says what a read does with a document over the size limit.
type OversizePolicy int

const (
	// OversizeFlag returns the document and sets Data.Oversize (default).
	OversizeFlag OversizePolicy = iota
	// OversizeRefuse returns ErrOversize and no content.
	OversizeRefuse
)

// SourceConfig says where custom data lives. The zero value is the
// worker's defaults.
type SourceConfig struct {
	// Database and Collection of the custom-data collection
	// (default "app" and "custom_user_data").
	Database   string
	Collection string
	// UserIDField is the field keying each user's document (default "userId").
	UserIDField string
	// OversizeBytes is the size limit (default 16384; negative: no limit).
	OversizeBytes int
	// Oversize is the policy for documents over the limit; the limit
	// applies to what is read, so without OmitFields.
	Oversize OversizePolicy
	// OmitFields are top-level fields left out of what is read and cached
	// (a projection), for fields tokens do not carry. Pair it with the
	// worker's NOTICE_IGNORE_FIELDS: the worker announces no update that
	// changed only those fields, and a cache that never holds them stays
	// exactly fresh. Must not hold _id or the user-id field.
	OmitFields []string
}

func (c *SourceConfig) setDefaults() {
	c.Database = cmp.Or(c.Database, DefaultDatabase)
	c.Collection = cmp.Or(c.Collection, DefaultCollection)
	c.UserIDField = cmp.Or(c.UserIDField, DefaultUserIDField)
	c.OversizeBytes = cmp.Or(c.OversizeBytes, DefaultOversizeBytes)
}

// Validate checks the configuration (after defaults).
func (c SourceConfig) Validate() error {
	c.setDefaults()
	if c.UserIDField == "_id" || c.UserIDField[0] == '$' {
		return fmt.Errorf("issuer: user-id field %q: must be a document field other than _id", c.UserIDField)
	}
	if c.Oversize != OversizeFlag && c.Oversize != OversizeRefuse {
		return fmt.Errorf("issuer: unknown oversize policy %d", c.Oversize)
	}
	for _, f := range c.OmitFields {
		switch {
		case f == "" || f == "_id" || f == c.UserIDField:
			return fmt.Errorf("issuer: omit fields: %q cannot be omitted (empty, _id or the user-id field)", f)
		case f[0] == '$' || strings.ContainsAny(f, ".\x00"):
			return fmt.Errorf("issuer: omit fields: %q must be a top-level field name (no '$' prefix, '.' or NUL)", f)
		}
	}
	return nil
}

// projection excludes OmitFields, in a stable order (nil when none).
func (c SourceConfig) projection() bson.D {
	fields := slices.Clone(c.OmitFields)
	slices.Sort(fields)
	fields = slices.Compact(fields)
	var p bson.D
	for _, f := range fields {
		p = append(p, bson.E{Key: f, Value: 0})
	}
	return p
}

// Getter returns one user's custom data. Source (a plain read) and Cache
// both implement it, so an issuer can adopt the cache without changing the
// code that uses the data.
type Getter interface {
	// Get returns the user's data; Data.Found is false when the user has no
	// document. The error wraps ErrOversize when the document is refused.
	Get(ctx context.Context, userID string) (Data, error)
}

// Source reads custom data from MongoDB with the worker's rules: one
// document per user, and when several share a user id, the first inserted
// (lowest _id) is the user's data.
type Source struct {
	coll  *mongo.Collection
	cfg   SourceConfig
	field string
	find  *options.FindOneOptionsBuilder
}

// readOptions read from the primary with read concern majority, whatever
// the client's defaults: a re-read after a notice must see the change the
// notice announced (a lagging secondary would return the old document and
// the cache would keep it until the next notice), and a write that is not
// majority-committed may be rolled back without any change event, so
// caching it would keep data that never existed for good. Change streams
// report only majority-committed changes, so a majority read on the
// primary always sees at least the announced one.
func readOptions() *options.CollectionOptionsBuilder {
	return options.Collection().SetReadPreference(readpref.Primary()).SetReadConcern(readconcern.Majority())
}

// NewSource returns a Source on client.
func NewSource(client *mongo.Client, cfg SourceConfig) (*Source, error) {
	if client == nil {
		return nil, errors.New("issuer: nil MongoDB client")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	// Sorting on _id makes "first inserted wins" hold even when the
	// worker runs with ALLOW_DUPLICATE_USERS (no unique index); with the
	// unique index there is one match and the sort is free.
	find := options.FindOne().SetSort(bson.D{{Key: "_id", Value: 1}})
	if p := cfg.projection(); p != nil {
		find.SetProjection(p)
	}
	return &Source{
		coll:  client.Database(cfg.Database).Collection(cfg.Collection, readOptions()),
		cfg:   cfg,
		field: cfg.UserIDField,
		find:  find,
	}, nil
}

// Get reads the user's document from MongoDB, every time.
func (s *Source) Get(ctx context.Context, userID string) (Data, error) {
	raw, err := s.coll.FindOne(ctx, bson.D{{Key: s.field, Value: userID}}, s.find).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return Data{}, nil
	}
	if err != nil {
		return Data{}, fmt.Errorf("issuer: read custom data: %w", err)
	}
	// The cache shares these bytes with every caller for as long as the
	// entry lives, so they must not alias a driver buffer.
	d, err := newData(bytes.Clone(raw), s.cfg.OversizeBytes, s.cfg.Oversize == OversizeRefuse)
	if err != nil {
		return Data{}, fmt.Errorf("issuer: %w", err)
	}
	return d, d.Err()
}
