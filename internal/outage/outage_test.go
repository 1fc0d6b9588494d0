package outage

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"syscall"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

type timeoutNetError struct{}

func (timeoutNetError) Error() string   { return "i/o timeout" }
func (timeoutNetError) Timeout() bool   { return true }
func (timeoutNetError) Temporary() bool { return true }

var _ net.Error = timeoutNetError{}

func TestIsSeparatesOutagesFromMistakes(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"nats timeout", fmt.Errorf("provision: %w", nats.ErrTimeout), true},
		{"no responders (JetStream not reachable yet)", nats.ErrNoResponders, true},
		{"disconnected", nats.ErrDisconnected, true},
		{"deadline", fmt.Errorf("ping: %w", context.DeadlineExceeded), true},
		{"mongo client disconnected", mongo.ErrClientDisconnected, true},
		{"jetstream unavailable", &jetstream.APIError{Code: 503, Description: "JetStream system temporarily unavailable"}, true},
		{"stream missing in verify mode", fmt.Errorf("verify: %w", jetstream.ErrStreamNotFound), false},
		{"a refusal of the worker's own", fmt.Errorf("index: %w", errors.New("duplicate users")), false},
		{"bad request", &jetstream.APIError{Code: 400, Description: "subjects overlap"}, false},
		// A missing role is fixed by an operator; the worker waits for it
		// rather than exiting, as it does for writes.
		{"unauthorized", mongo.CommandError{Code: 13, Message: "not authorized"}, true},
		{"invalid options", mongo.CommandError{Code: 72, Message: "invalid options"}, false},
		{"plain error", errors.New("boom"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Is(tt.err); got != tt.want {
				t.Errorf("Is(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestMongoDB(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"deadline", fmt.Errorf("bulk write: %w", context.DeadlineExceeded), true},
		{"canceled", context.Canceled, true},
		{"net timeout", timeoutNetError{}, true},
		// What the driver wraps in its connection error when no server
		// can be dialled (a label-less error of the x/ packages).
		{"connection refused", fmt.Errorf("connection() error: %w", refused), true},
		{"certificate not trusted", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, true},
		{"client disconnected", mongo.ErrClientDisconnected, true},
		{"network label", mongo.CommandError{Code: 0, Labels: []string{"NetworkError"}}, true},
		{"retryable write label", mongo.CommandError{Code: 0, Labels: []string{"RetryableWriteError"}}, true},
		{"time limit label", mongo.CommandError{Code: 0, Labels: []string{"ExceededTimeLimitError"}}, true},
		{"not primary command", mongo.CommandError{Code: 10107, Name: "NotWritablePrimary"}, true},
		{"election in progress", mongo.CommandError{Code: 216, Name: "ElectionInProgress"}, true},
		{"max time", mongo.CommandError{Code: 50, Name: "MaxTimeMSExpired"}, true},
		{"bad command", mongo.CommandError{Code: 2, Name: "BadValue"}, false},
		{"write concern error", mongo.BulkWriteException{WriteConcernError: &mongo.WriteConcernError{Code: 64}}, true},
		{"write errors only", mongo.BulkWriteException{WriteErrors: []mongo.BulkWriteError{{WriteError: mongo.WriteError{Index: 0, Code: 121}}}}, false},
		// One operation's not-primary is that operation's: the bulk
		// write as a whole is judged per operation.
		{"per-operation down code", mongo.BulkWriteException{WriteErrors: []mongo.BulkWriteError{{WriteError: mongo.WriteError{Index: 0, Code: 10107}}}}, false},
		{"bulk with network label", mongo.BulkWriteException{Labels: []string{"NetworkError"}}, true},
		// A TLS file named in the URI that cannot be opened: its
		// syscall.Errno is a net.Error, yet no retry can fix it.
		{"TLS file missing", &fs.PathError{Op: "open", Path: "/etc/ca.pem", Err: syscall.ENOENT}, false},
		{"plain error", errors.New("something else"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := MongoDB(tc.err); got != tc.want {
				t.Fatalf("MongoDB(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestMongoDBCode(t *testing.T) {
	for code, want := range map[int]bool{
		10107: true, 91: true, 11602: true, 64: true, 13: true, 50: true, 11601: true,
		121: false, 11000: false, 2: false, 112: false, 99999: false,
	} {
		if got := MongoDBCode(code); got != want {
			t.Errorf("MongoDBCode(%d) = %v, want %v", code, got, want)
		}
	}
}

func TestFirstCode(t *testing.T) {
	if got := FirstCode(fmt.Errorf("x: %w", mongo.CommandError{Code: 286, Message: "quotes a value"})); got != 286 {
		t.Fatalf("FirstCode = %d, want 286", got)
	}
	if got := FirstCode(errors.New("no server error")); got != 0 {
		t.Fatalf("FirstCode = %d, want 0", got)
	}
}
