package customdata

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

func TestClassifyWriteCode(t *testing.T) {
	cases := []struct {
		code int
		want Fault
	}{
		{121, Permanent}, // document validation
		{52, Permanent},  // $-prefixed field
		{40, Permanent},  // conflicting update operators
		{66, Permanent},  // immutable field
		{10107, Outage},  // not writable primary
		{91, Outage},     // shutdown in progress
		{11602, Outage},  // interrupted by replication state change
		{64, Outage},     // write concern failed
		{13, Outage},     // unauthorized: an operator fixes that
		{112, Retry},     // write conflict
		{11000, Retry},   // duplicate key, by code alone
		{99999, Retry},   // unknown
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			if got := classifyWriteCode(tc.code); got != tc.want {
				t.Fatalf("classifyWriteCode(%d) = %s, want %s", tc.code, got, tc.want)
			}
		})
	}
}

func TestClassifyDuplicateKey(t *testing.T) {
	keyPattern := func(field string) bson.Raw {
		raw, err := bson.Marshal(bson.D{{Key: "code", Value: 11000}, {Key: "keyPattern", Value: bson.D{{Key: field, Value: 1}}}})
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	cases := []struct {
		name, message string
		raw           bson.Raw
		want          Fault
	}{
		{"user-id race", `E11000 duplicate key error collection: db.users index: userId_unique dup key: { userId: "u1" }`, nil, Retry},
		{"quoted field", `E11000 duplicate key error collection: db.users index: userId_1 dup key: { "userId": "u1" }`, nil, Retry},
		{"other index", `E11000 duplicate key error collection: db.users index: email_1 dup key: { email: "x@y" }`, nil, Permanent},
		{"field with user-id prefix", `E11000 ... dup key: { userIdLegacy: "u1" }`, nil, Permanent},
		{"old format without names", `E11000 duplicate key error index: db.users.$userId_1 dup key: { : "u1" }`, nil, Retry},
		{"unparseable", `E11000 duplicate key error`, nil, Retry},
		// The key pattern the server reports wins over the message.
		{"key pattern: user id", `E11000 duplicate key error`, keyPattern("userId"), Retry},
		{"key pattern: other index", `E11000 ... dup key: { userId: "u1" }`, keyPattern("email"), Permanent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			we := mongo.WriteError{Code: 11000, Message: tc.message, Raw: tc.raw}
			if got := classifyDuplicateKey(we, "userId"); got != tc.want {
				t.Fatalf("classifyDuplicateKey = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestClassifyBulkErrorMapsOperations(t *testing.T) {
	bulk := func(errs ...mongo.BulkWriteError) error { return mongo.BulkWriteException{WriteErrors: errs} }
	we := func(index, code int, msg string) mongo.BulkWriteError {
		return mongo.BulkWriteError{WriteError: mongo.WriteError{Index: index, Code: code, Message: msg}}
	}
	cases := []struct {
		name   string
		err    error
		n      int
		want   []Fault
		wantOK bool
	}{
		{"success", nil, 3, []Fault{OK, OK, OK}, true},
		{"one permanent", bulk(we(1, 121, "Document failed validation")), 3, []Fault{OK, Permanent, OK}, true},
		{"mixed", bulk(we(0, 11000, `dup key: { userId: "a" }`), we(2, 11000, `dup key: { team: "red" }`)), 3,
			[]Fault{Retry, OK, Permanent}, true},
		{"per-op infra", bulk(we(2, 10107, "not primary")), 3, []Fault{OK, OK, Outage}, true},
		{"whole call infra", fmt.Errorf("x: %w", context.DeadlineExceeded), 2, []Fault{Outage, Outage}, true},
		{"index out of range", bulk(we(5, 121, "")), 2, nil, false},
		{"unattributable", errors.New("marshal failed"), 2, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, errs, ok := classifyBulkError(tc.err, tc.n, "userId")
			if ok != tc.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tc.wantOK)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("per-operation = %v, want %v", got, tc.want)
			}
			for i, f := range got {
				if (f == OK) != (errs[i] == nil) {
					t.Fatalf("op %d: failure %s with error %v", i, f, errs[i])
				}
			}
		})
	}
}

func TestWriteErrorsCarryNoDocumentContent(t *testing.T) {
	err := mongo.BulkWriteException{WriteErrors: []mongo.BulkWriteError{{WriteError: mongo.WriteError{
		Index: 0, Code: 11000, Message: `E11000 duplicate key error index: email_1 dup key: { email: "secret@example.com" }`,
	}}}}
	_, errs, _ := classifyBulkError(err, 1, "userId")
	if got := errs[0].Error(); got != "mongodb write error code 11000" {
		t.Fatalf("error text = %q", got)
	}
	if got := SanitizeError(mongo.CommandError{Code: 2, Message: "bad value secret"}).Error(); got != "mongodb write error code 2" {
		t.Fatalf("sanitized = %q", got)
	}
	// A write-concern failure is an outage (logged, shown by /readyz);
	// the write errors that come with it must not be.
	err.WriteConcernError = &mongo.WriteConcernError{Code: 64, Message: "waiting for replication timed out"}
	failures, errs, _ := classifyBulkError(err, 1, "userId")
	if failures[0] != Outage {
		t.Fatalf("failure = %s, want infrastructure", failures[0])
	}
	if got := errs[0].Error(); strings.Contains(got, "secret") || !strings.Contains(got, "replication timed out") {
		t.Fatalf("error text = %q", got)
	}
}
