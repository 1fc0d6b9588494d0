package testsupport

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/internal/mongostandin"
)

// Mongo is a MongoDB a test can use: either the replica set named by
// MONGODB_URI, or an in-memory mongo-java-server stand-in started for the
// test binary.
type Mongo struct {
	URI string
	// StandIn is set when the server is the in-memory stand-in; tests that
	// must stop and restart the server need it.
	StandIn *mongostandin.StandIn
}

var (
	sharedOnce  sync.Once
	sharedMongo *Mongo
	sharedErr   error
)

// MongoDB returns the MongoDB for integration tests. It never skips: with no
// MONGODB_URI and no way to start the stand-in the test fails, loudly.
// The stand-in is shared by every test in the binary (one JVM start);
// tests isolate themselves with a database name from DatabaseName.
func MongoDB(t testing.TB) *Mongo {
	t.Helper()
	if uri := os.Getenv("MONGODB_URI"); uri != "" {
		return &Mongo{URI: uri}
	}
	sharedOnce.Do(func() {
		s, err := mongostandin.Start(context.Background())
		if err != nil {
			sharedErr = err
			return
		}
		sharedMongo = &Mongo{URI: s.URI(), StandIn: s}
	})
	if sharedErr != nil {
		t.Fatalf("no MongoDB for integration tests: MONGODB_URI is unset and the stand-in did not start: %v", sharedErr)
	}
	return sharedMongo
}

// PrivateMongoDB starts a stand-in for this test alone (so the test may stop
// and restart it) or, with MONGODB_URI set, returns the shared server.
func PrivateMongoDB(t testing.TB) *Mongo {
	t.Helper()
	if uri := os.Getenv("MONGODB_URI"); uri != "" {
		return &Mongo{URI: uri}
	}
	s, err := mongostandin.Start(context.Background())
	if err != nil {
		t.Fatalf("start MongoDB stand-in: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return &Mongo{URI: s.URI(), StandIn: s}
}

// Client connects a driver client for the test and disconnects it at cleanup.
func (m *Mongo) Client(t testing.TB) *mongo.Client {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(m.URI).SetServerSelectionTimeout(10 * time.Second))
	if err != nil {
		t.Fatalf("connect %s: %v", m.URI, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Disconnect(ctx)
	})
	return c
}

// DatabaseName returns a database name unique to the test.
func DatabaseName(t testing.TB) string {
	name := strings.NewReplacer("/", "_", " ", "_", ".", "_").Replace(t.Name())
	if len(name) > 40 {
		name = name[len(name)-40:]
	}
	return fmt.Sprintf("t_%s_%d", name, time.Now().UnixNano()%1_000_000_000)
}
