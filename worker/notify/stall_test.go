package notify

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// proxyMode is what a mongoPath does with traffic.
type proxyMode int

const (
	proxyForward   proxyMode = iota
	proxyRefuse              // drop every connection at once: MongoDB is unreachable
	proxyBlackhole           // accept and swallow bytes, never answer: MongoDB hangs
)

// mongoPath is a TCP proxy between one replica's MongoDB client and the
// server, so a test can break that replica's path to MongoDB while the
// others (and the test's own client) keep working on the same database.
type mongoPath struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	mode  proxyMode
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startMongoPath(t testing.TB, target string) *mongoPath {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &mongoPath{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *mongoPath) addr() string { return p.ln.Addr().String() }

func (p *mongoPath) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		mode := p.mode
		if mode == proxyRefuse {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(c, mode)
	}
}

func (p *mongoPath) serve(c net.Conn, mode proxyMode) {
	defer p.wg.Done()
	defer p.forget(c)
	if mode == proxyBlackhole {
		_, _ = io.Copy(io.Discard, c)
		return
	}
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	defer p.forget(up)
	done := make(chan struct{}, 2)
	go func() { p.pipe(up, c); done <- struct{}{} }()
	p.pipe(c, up)
	<-done
}

// pipe copies src to dst while forwarding; once the path is black-holed it
// keeps reading (so nobody sees an error) but forwards nothing.
func (p *mongoPath) pipe(dst, src net.Conn) {
	defer func() { _ = dst.Close(); _ = src.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			forward := p.mode == proxyForward
			p.mu.Unlock()
			if forward {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *mongoPath) forget(c net.Conn) {
	_ = c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// set switches the mode; refusing also cuts the open connections.
func (p *mongoPath) set(mode proxyMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = mode
	if mode == proxyRefuse {
		for c := range p.conns {
			_ = c.Close()
		}
	}
}

func (p *mongoPath) close() {
	_ = p.ln.Close()
	p.set(proxyRefuse)
	p.wg.Wait()
}

// clientThrough connects a client that reaches uri's first host through p.
func clientThrough(t testing.TB, uri string, p *mongoPath) *mongo.Client {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(uri).SetHosts([]string{p.addr()}).SetDirect(true).
		SetServerSelectionTimeout(2 * time.Second).SetConnectTimeout(2 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.close() // unblock a black-holed client first
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = c.Disconnect(ctx)
	})
	return c
}

func firstMongoHost(t testing.TB, uri string) string {
	t.Helper()
	cs, err := connstring.ParseAndValidate(uri)
	if err != nil || len(cs.Hosts) == 0 {
		t.Fatalf("MongoDB URI %q: %v", uri, err)
	}
	return cs.Hosts[0]
}

// TestNotifierStalledLeaderStepsDown: the leader's path to MongoDB breaks
// (refused, or hanging without an answer) while NATS keeps working, so it
// could renew the lease forever. It must give the lease up; the standby
// takes over and publishes every change, including those made while the
// leader was stuck, without a flush-all.
func TestNotifierStalledLeaderStepsDown(t *testing.T) {
	for _, tc := range []struct {
		name    string
		breakTo proxyMode
	}{
		{"mongo unreachable", proxyRefuse},
		{"mongo hangs", proxyBlackhole},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newNotifierEnv(t)
			ctx := testsupport.Context(t)
			insert := func(user string) {
				t.Helper()
				if _, err := e.coll.InsertOne(ctx, bson.M{"userId": user}); err != nil {
					t.Fatal(err)
				}
			}
			e.cfg.LeaseTTL = time.Second
			e.cfg.StallAfter = 2 * time.Second
			e.cfg.MaxAwaitTime = 200 * time.Millisecond
			e.cfg.RetryMaxInterval = 300 * time.Millisecond
			e.cfg.UnhealthyAfter = time.Minute // only the step-down may make a unhealthy

			path := startMongoPath(t, firstMongoHost(t, e.mongo.URI))
			aDB := clientThrough(t, e.mongo.URI, path).Database(e.db.Name())
			a := e.startOn(aDB, func(c *Config) { c.InstanceID = "a" })
			r := e.readNotices()
			r.until("flush", isFlush(events.FlushNoCheckpoint))
			testsupport.Eventually(t, "a leads", a.IsLeader)
			b := e.start(func(c *Config) { c.InstanceID = "b" })

			insert("x1")
			x1 := r.until("x1", isUser("x1", "insert"))
			e.waitCheckpoint(x1[len(x1)-1].ClusterTime)
			if b.IsLeader() {
				t.Fatal("b leads while a works")
			}

			path.set(tc.breakTo)
			publishedByA := a.published()
			insert("x2") // a cannot see it
			testsupport.Eventually(t, "b takes over", b.IsLeader)
			insert("x3")
			got := r.until("x3", isUser("x3", "insert"))
			assertNoFlush(t, got) // b resumed at a's checkpoint
			if !slices.ContainsFunc(got, isUser("x2", "insert")) {
				t.Fatalf("after the takeover: got %v, want x2 before x3", got)
			}

			if a.IsLeader() {
				t.Fatal("a still leads after b took over")
			}
			if err := a.Healthy(); !errors.Is(err, ErrNotifierUnhealthy) {
				t.Fatalf("a.Healthy() = %v, want ErrNotifierUnhealthy (stepped down)", err)
			}
			if v := metricValue(a.metrics.stepdowns.WithLabelValues(stepDownStalled)); v != 1 {
				t.Errorf("a's stepdowns_total{reason=%q} = %v, want 1", stepDownStalled, v)
			}
			if p := a.published(); p != publishedByA {
				t.Errorf("a published %v notices after its MongoDB path broke", p-publishedByA)
			}
			if err := b.Healthy(); err != nil {
				t.Errorf("b.Healthy() = %v", err)
			}
		})
	}
}
