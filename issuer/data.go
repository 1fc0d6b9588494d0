package issuer

import (
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
)

// Data is one user's custom data as read from MongoDB: the first inserted
// document with the user's id, or nothing.
//
// A Data is an immutable view, cheap to copy (one pointer). The cache hands
// the same underlying bytes to every caller without copying them, which is
// what makes a hit allocation-free; so the slices returned by Raw and JSON
// are shared and MUST NOT be modified. Callers that need a mutable copy use
// Decode (or copy the slice). The zero Data means "no document".
type Data struct{ d *doc }

type doc struct {
	raw      bson.Raw
	json     []byte
	docID    string
	size     int
	oversize bool
	err      error // ErrOversize (wrapped) when the source refuses oversize documents
}

// newData builds the view of a document read from MongoDB. Its relaxed
// Extended JSON form is computed once here, so issuers that put the data in
// a token pay for it per read, not per hit.
func newData(raw bson.Raw, limit int, refuse bool) (Data, error) {
	d := &doc{docID: events.DocumentID(raw.Lookup("_id")), size: len(raw)}
	d.oversize = limit > 0 && d.size > limit
	if d.oversize && refuse {
		d.err = fmt.Errorf("document %s is %d bytes, limit %d: %w", d.docID, d.size, limit, ErrOversize)
		return Data{d}, nil
	}
	js, err := bson.MarshalExtJSON(raw, false, false)
	if err != nil {
		return Data{}, fmt.Errorf("render document %s as JSON: %w", d.docID, err)
	}
	d.raw, d.json = raw, js
	return Data{d}, nil
}

// DataFromRaw returns the view of a document read some other way, e.g. by
// a fake Getter in an issuer's tests (no size limit applies). raw is kept,
// not copied: do not modify it afterwards. A nil raw is "no document".
func DataFromRaw(raw bson.Raw) (Data, error) {
	if raw == nil {
		return Data{}, nil
	}
	if err := raw.Validate(); err != nil {
		return Data{}, fmt.Errorf("issuer: %w", err)
	}
	return newData(raw, 0, false)
}

// Found reports whether the user has a document.
func (d Data) Found() bool { return d.d != nil }

// DocumentID is the document's _id in the form notices use: ObjectId hex, a
// string as is, anything else as canonical Extended JSON; "" when not found.
func (d Data) DocumentID() string {
	if d.d == nil {
		return ""
	}
	return d.d.docID
}

// Size is the document's BSON size in bytes (0 when not found).
func (d Data) Size() int {
	if d.d == nil {
		return 0
	}
	return d.d.size
}

// Oversize reports whether the document exceeds the source's size limit.
func (d Data) Oversize() bool { return d.d != nil && d.d.oversize }

// Raw returns the document's BSON, shared with every other reader of the
// same cached value: do not modify it. nil when not found or refused. Its
// capacity is its length, so appending to it copies instead of writing
// into what other readers see.
func (d Data) Raw() bson.Raw {
	if d.d == nil {
		return nil
	}
	return d.d.raw[:len(d.d.raw):len(d.d.raw)]
}

// JSON returns the document as relaxed Extended JSON (dates as
// {"$date":"…"}), shared with every other reader: do not modify it. nil
// when not found or refused; use it as a JSON null. Like Raw, appending to
// it copies.
func (d Data) JSON() []byte {
	if d.d == nil {
		return nil
	}
	return d.d.json[:len(d.d.json):len(d.d.json)]
}

// Lookup returns the value at the dotted path of keys, or a zero RawValue.
// The value's bytes are shared: do not modify them.
func (d Data) Lookup(key ...string) bson.RawValue {
	if d.d == nil || d.d.raw == nil {
		return bson.RawValue{}
	}
	v, err := d.d.raw.LookupErr(key...)
	if err != nil {
		return bson.RawValue{}
	}
	return v
}

// Decode unmarshals a private copy of the document into v.
func (d Data) Decode(v any) error {
	if d.d == nil || d.d.raw == nil {
		return fmt.Errorf("decode custom data: no document")
	}
	return bson.Unmarshal(d.d.raw, v)
}

// Err is the error a Get returns with this Data: nil, or ErrOversize when
// the source refuses oversize documents.
func (d Data) Err() error {
	if d.d == nil {
		return nil
	}
	return d.d.err
}
