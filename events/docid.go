package events

import (
	"bytes"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// DocumentID renders a document _id the way notices name it
// (Notice.DocumentID, the doc.<token> subject): ObjectId as hex, a string
// as is, anything else as canonical Extended JSON; "" when absent. The
// worker and issuers must agree on it byte for byte.
func DocumentID(v bson.RawValue) string {
	switch v.Type {
	case 0, bson.TypeNull, bson.TypeUndefined:
		return ""
	case bson.TypeObjectID:
		return v.ObjectID().Hex()
	case bson.TypeString:
		return v.StringValue()
	}
	doc, err := bson.Marshal(bson.D{{Key: "v", Value: v}})
	if err != nil {
		return ""
	}
	js, err := bson.MarshalExtJSON(bson.Raw(doc), true, false)
	if err != nil {
		return ""
	}
	js = bytes.TrimPrefix(js, []byte(`{"v":`))
	js = bytes.TrimSuffix(js, []byte(`}`))
	return string(js)
}
