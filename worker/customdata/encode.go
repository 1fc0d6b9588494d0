package customdata

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/customdata-worker/customdata-worker/triggers"
)

// The write models are encoded here straight into BSON with the bsoncore
// appenders, into one buffer per Apply call, instead of handing the driver
// bson.D/bson.M values it would encode by reflection (map key listing,
// per-field encoders, a buffer per document). The bytes are the ones the
// driver's default registry produces for the same values (see
// TestEncodeMatchesDriver), except that the fields under each operator are
// in sorted (byte) order rather than in Go's random map order. The server
// does not apply them in the order sent anyway: since MongoDB 5.0 an update
// operator processes fields with string names in lexicographic order and
// fields with numeric names in numeric order.
//
// bsoncore is under the driver's x/, documented as internal with no
// compatibility promise; it stays because it is measured to pay
// (BenchmarkWriteModels, one run, 2 shared cores, 100 lastLogin writes):
// 20–25 µs and 200 allocations per batch here against 97–136 µs and 1,100
// for the same writes as sorted bson.D encoded by the driver, i.e. about
// 1 µs of the worker's ~15 µs CPU per event. TestEncodeMatchesDriver
// compares the bytes with the driver's own encoding, so a driver upgrade
// that changes either fails there first.

// checkKey returns an error wrapping ErrKeyHasNUL if key cannot be a BSON
// key.
func checkKey(key string) error {
	if strings.IndexByte(key, 0) >= 0 {
		return fmt.Errorf("encode field %q: %w", key, ErrKeyHasNUL)
	}
	return nil
}

// appendFilter appends the filter document {field: userID} or, with a
// target, {_id: target, field: userID} and returns it as its own slice.
func appendFilter(buf []byte, field, userID string, target any) ([]byte, bson.Raw, error) {
	if err := checkKey(field); err != nil {
		return buf, nil, err
	}
	start := len(buf)
	idx, buf := bsoncore.AppendDocumentStart(buf)
	if target != nil {
		var err error
		if buf, err = appendValueElement(buf, "_id", target); err != nil {
			return buf[:start], nil, err
		}
	}
	buf = bsoncore.AppendStringElement(buf, field, userID)
	buf, err := bsoncore.AppendDocumentEnd(buf, idx)
	if err != nil {
		return buf[:start], nil, err
	}
	return buf, bson.Raw(buf[start:len(buf):len(buf)]), nil
}

// appendUpdate appends the update document of wr: $set, $max and
// $setOnInsert, in that order, each present only when it has fields.
func appendUpdate(buf []byte, wr triggers.Write, keys []string) ([]byte, bson.Raw, []string, error) {
	start := len(buf)
	idx, buf := bsoncore.AppendDocumentStart(buf)
	for _, op := range [...]struct {
		name   string
		fields map[string]any
	}{{"$set", wr.Set}, {"$max", wr.Max}, {"$setOnInsert", wr.SetOnInsert}} {
		if len(op.fields) == 0 {
			continue
		}
		var sub int32
		sub, buf = bsoncore.AppendDocumentElementStart(buf, op.name)
		keys = keys[:0]
		for k := range op.fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			var err error
			if buf, err = appendValueElement(buf, k, op.fields[k]); err != nil {
				return buf[:start], nil, keys, err
			}
		}
		var err error
		if buf, err = bsoncore.AppendDocumentEnd(buf, sub); err != nil {
			return buf[:start], nil, keys, err
		}
	}
	buf, err := bsoncore.AppendDocumentEnd(buf, idx)
	if err != nil {
		return buf[:start], nil, keys, err
	}
	return buf, bson.Raw(buf[start:len(buf):len(buf)]), keys, nil
}

// appendValueElement appends key: v encoded as the driver's default
// registry encodes it. The types a trigger write may carry (see
// triggers.Write) are appended directly; anything else (the resolved
// target _id, a bson.RawValue) goes through the driver's encoder.
func appendValueElement(buf []byte, key string, v any) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return buf, err
	}
	switch x := v.(type) {
	case nil:
		return bsoncore.AppendNullElement(buf, key), nil
	case string:
		return bsoncore.AppendStringElement(buf, key, x), nil
	case bool:
		return bsoncore.AppendBooleanElement(buf, key, x), nil
	case int:
		// As the default registry: int32 when it fits, else int64.
		if int64(x) >= -1<<31 && int64(x) <= 1<<31-1 {
			return bsoncore.AppendInt32Element(buf, key, int32(x)), nil
		}
		return bsoncore.AppendInt64Element(buf, key, int64(x)), nil
	case int32:
		return bsoncore.AppendInt32Element(buf, key, x), nil
	case int64:
		return bsoncore.AppendInt64Element(buf, key, x), nil
	case float64:
		return bsoncore.AppendDoubleElement(buf, key, x), nil
	case time.Time:
		return bsoncore.AppendTimeElement(buf, key, x), nil
	case bson.RawValue:
		return bsoncore.AppendValueElement(buf, key, bsoncore.Value{Type: bsoncore.Type(x.Type), Data: x.Value}), nil
	}
	t, data, err := bson.MarshalValue(v)
	if err != nil {
		return buf, err
	}
	return bsoncore.AppendValueElement(buf, key, bsoncore.Value{Type: bsoncore.Type(t), Data: data}), nil
}
