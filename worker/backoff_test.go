package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
)

func TestAuthClassifyWriteCode(t *testing.T) {
	cases := []struct {
		code int
		want writeFailure
	}{
		{121, writePermanent},   // document validation
		{52, writePermanent},    // $-prefixed field
		{40, writePermanent},    // conflicting update operators
		{66, writePermanent},    // immutable field
		{10107, writeInfra},     // not writable primary
		{91, writeInfra},        // shutdown in progress
		{11602, writeInfra},     // interrupted by replication state change
		{64, writeInfra},        // write concern failed
		{13, writeInfra},        // unauthorized: an operator fixes that
		{112, writeTransient},   // write conflict
		{11000, writeTransient}, // duplicate key, by code alone
		{99999, writeTransient}, // unknown
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			if got := classifyWriteCode(tc.code); got != tc.want {
				t.Fatalf("classifyWriteCode(%d) = %s, want %s", tc.code, got, tc.want)
			}
		})
	}
}

func TestAuthClassifyDuplicateKey(t *testing.T) {
	cases := []struct {
		name, message string
		want          writeFailure
	}{
		{"user-id race", `E11000 duplicate key error collection: db.users index: userId_unique dup key: { userId: "u1" }`, writeTransient},
		{"quoted field", `E11000 duplicate key error collection: db.users index: userId_1 dup key: { "userId": "u1" }`, writeTransient},
		{"other index", `E11000 duplicate key error collection: db.users index: email_1 dup key: { email: "x@y" }`, writePermanent},
		{"field with user-id prefix", `E11000 ... dup key: { userIdLegacy: "u1" }`, writePermanent},
		{"old format without names", `E11000 duplicate key error index: db.users.$userId_1 dup key: { : "u1" }`, writeTransient},
		{"unparseable", `E11000 duplicate key error`, writeTransient},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := classifyDuplicateKey(tc.message, "userId"); got != tc.want {
				t.Fatalf("classifyDuplicateKey = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestAuthClassifyBulkErrorMapsOperations(t *testing.T) {
	bulk := func(errs ...mongo.BulkWriteError) error { return mongo.BulkWriteException{WriteErrors: errs} }
	we := func(index, code int, msg string) mongo.BulkWriteError {
		return mongo.BulkWriteError{WriteError: mongo.WriteError{Index: index, Code: code, Message: msg}}
	}
	cases := []struct {
		name   string
		err    error
		n      int
		want   []writeFailure
		wantOK bool
	}{
		{"success", nil, 3, []writeFailure{writeOK, writeOK, writeOK}, true},
		{"one permanent", bulk(we(1, 121, "Document failed validation")), 3, []writeFailure{writeOK, writePermanent, writeOK}, true},
		{"mixed", bulk(we(0, 11000, `dup key: { userId: "a" }`), we(2, 11000, `dup key: { team: "red" }`)), 3,
			[]writeFailure{writeTransient, writeOK, writePermanent}, true},
		{"per-op infra", bulk(we(2, 10107, "not primary")), 3, []writeFailure{writeOK, writeOK, writeInfra}, true},
		{"whole call infra", fmt.Errorf("x: %w", context.DeadlineExceeded), 2, []writeFailure{writeInfra, writeInfra}, true},
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
				if (f == writeOK) != (errs[i] == nil) {
					t.Fatalf("op %d: failure %s with error %v", i, f, errs[i])
				}
			}
		})
	}
}

func TestAuthWriteErrorsCarryNoDocumentContent(t *testing.T) {
	err := mongo.BulkWriteException{WriteErrors: []mongo.BulkWriteError{{WriteError: mongo.WriteError{
		Index: 0, Code: 11000, Message: `E11000 duplicate key error index: email_1 dup key: { email: "secret@example.com" }`,
	}}}}
	_, errs, _ := classifyBulkError(err, 1, "userId")
	if got := errs[0].Error(); got != "mongodb write error code 11000" {
		t.Fatalf("error text = %q", got)
	}
	if got := sanitizeWriteError(mongo.CommandError{Code: 2, Message: "bad value secret"}).Error(); got != "mongodb write error code 2" {
		t.Fatalf("sanitized = %q", got)
	}
	// A write-concern failure is an outage (logged, shown by /readyz);
	// the write errors that come with it must not be.
	err.WriteConcernError = &mongo.WriteConcernError{Code: 64, Message: "waiting for replication timed out"}
	failures, errs, _ := classifyBulkError(err, 1, "userId")
	if failures[0] != writeInfra {
		t.Fatalf("failure = %s, want infrastructure", failures[0])
	}
	if got := errs[0].Error(); strings.Contains(got, "secret") || !strings.Contains(got, "replication timed out") {
		t.Fatalf("error text = %q", got)
	}
}

func TestAuthNakDelay(t *testing.T) {
	steps := []time.Duration{time.Second, 5 * time.Second, 30 * time.Second}
	cases := []struct {
		delivered uint64
		steps     []time.Duration
		want      time.Duration
	}{
		{0, steps, time.Second},
		{1, steps, time.Second},
		{2, steps, 5 * time.Second},
		{3, steps, 30 * time.Second},
		{50, steps, 30 * time.Second},
		{1, nil, 0},
	}
	for _, tc := range cases {
		if got := nakDelay(tc.steps, tc.delivered); got != tc.want {
			t.Errorf("nakDelay(%v, %d) = %s, want %s", tc.steps, tc.delivered, got, tc.want)
		}
	}
}

func TestAuthHealthTransitions(t *testing.T) {
	var h authHealth
	now := time.Unix(1_000_000, 0)
	grace := 10 * time.Second
	if err := h.check(now, grace); err == nil {
		t.Fatal("healthy before running")
	}
	h.setRunning(true)
	h.runningSince = now
	if err := h.check(now, grace); err != nil {
		t.Fatalf("just started: %v", err)
	}
	if _, first := h.fetch.Succeeded(now); !first {
		t.Fatal("first fetch success is a transition")
	}
	if _, again := h.fetch.Succeeded(now); again {
		t.Fatal("repeated success is not a transition")
	}
	if !h.mongo.Failed(now, errors.New("down")) || h.mongo.Failed(now.Add(time.Second), errors.New("down")) {
		t.Fatal("only the first failure is a transition")
	}
	if err := h.check(now.Add(5*time.Second), grace); err != nil {
		t.Fatalf("within grace: %v", err)
	}
	err := h.check(now.Add(11*time.Second), grace)
	if err == nil || !strings.Contains(err.Error(), "MongoDB") || strings.Contains(err.Error(), "NATS") {
		t.Fatalf("after grace = %v, want MongoDB named alone", err)
	}
	if down, ok := h.mongo.Succeeded(now.Add(12 * time.Second)); !ok || down != 12*time.Second {
		t.Fatalf("recovery = %s, %v", down, ok)
	}
	h.fetch.Failed(now.Add(12*time.Second), errors.New("no responders"))
	err = h.check(now.Add(30*time.Second), grace)
	if err == nil || !strings.Contains(err.Error(), "NATS") || strings.Contains(err.Error(), "MongoDB") {
		t.Fatalf("fetch down = %v, want NATS named alone", err)
	}
}
