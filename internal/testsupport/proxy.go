package testsupport

import (
	"bytes"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// MongoProxy is a TCP proxy in front of a MongoDB that can withhold the
// replies to one command, the way a real server keeps a command waiting
// (createIndexes waiting for its commit quorum while a member is down),
// which the stand-in cannot do.
type MongoProxy struct {
	// URI is the MongoDB URI through the proxy (direct connection).
	URI string

	ln      net.Listener
	target  string
	holding atomic.Value // string: command name whose replies are withheld; "" for none
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   []net.Conn
}

// StartMongoProxy proxies to the single host of m.URI until the test ends.
func StartMongoProxy(t testing.TB, m *Mongo) *MongoProxy {
	t.Helper()
	u, err := url.Parse(m.URI)
	if err != nil || strings.Contains(u.Host, ",") {
		t.Fatalf("proxy: need a single-host MongoDB URI, got %q", m.URI)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &MongoProxy{ln: ln, target: u.Host, URI: "mongodb://" + ln.Addr().String() + "/?directConnection=true"}
	p.holding.Store("")
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Hold withholds, from now on, the replies on every connection that sends
// the command cmd (e.g. "createIndexes"); Hold("") stops withholding on new
// connections.
func (p *MongoProxy) Hold(cmd string) { p.holding.Store(cmd) }

func (p *MongoProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		var held atomic.Bool
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			defer s.Close()
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if cmd := p.holding.Load().(string); cmd != "" && bytes.Contains(buf[:n], []byte(cmd)) {
						held.Store(true)
					}
					if _, werr := s.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
		go func() {
			defer p.wg.Done()
			defer c.Close()
			buf := make([]byte, 64<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 && !held.Load() {
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

func (p *MongoProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
