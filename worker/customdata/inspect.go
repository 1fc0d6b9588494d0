package customdata

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/mongo"
)

// UserIndex describes the index EnsureUserIndex looks for: one whose key
// is exactly the user-id field.
type UserIndex struct {
	// Name is the index's name; empty when there is none.
	Name string
	// Unique is set when that index is unique.
	Unique bool
}

// InspectUserIndex returns the collection's index on field, preferring a
// unique one, as EnsureUserIndex judges it (for `customdata-worker
// check`). It only reads (listIndexes).
func InspectUserIndex(ctx context.Context, coll *mongo.Collection, field string) (UserIndex, error) {
	existing, err := userFieldIndexes(ctx, coll, field)
	if err != nil {
		return UserIndex{}, err
	}
	var out UserIndex
	for _, ix := range existing {
		if ix.unique {
			return UserIndex{Name: ix.name, Unique: true}, nil
		}
		if out.Name == "" {
			out.Name = ix.name
		}
	}
	return out, nil
}

// UserIndexName is the name EnsureUserIndex gives the unique index.
func UserIndexName(field string) string { return userIndexName(field) }
