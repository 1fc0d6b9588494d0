package chaos

import (
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"
)

// mongoProxy is a TCP proxy in front of MongoDB. The worker replicas and
// both issuers connect through it; the harness (checks, outside writes:
// the application) keeps a direct connection. Cutting it drops every
// connection through it and refuses new ones, as a network partition
// would, whether MongoDB is the stand-in or a real server: the clients
// behind it see MongoDB down while others keep writing, so changes made
// meanwhile must be announced after it.
type mongoProxy struct {
	ln       net.Listener
	upstream string // host:port

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}

	wg sync.WaitGroup // the accept loop and every pipe
}

func startMongoProxy(upstream string) (*mongoProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &mongoProxy{ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.serve)
	return p, nil
}

func (p *mongoProxy) addr() string { return p.ln.Addr().String() }

func (p *mongoProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !p.track(c) {
			c.Close() // cut: refused
			continue
		}
		p.wg.Go(func() { p.pipe(c) })
	}
}

// track registers c unless the proxy is cut.
func (p *mongoProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *mongoProxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

// pipe copies between the client c and a new connection to MongoDB until
// either side ends or the proxy is cut.
func (p *mongoProxy) pipe(c net.Conn) {
	defer p.untrack(c)
	defer c.Close()
	up, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		return
	}
	if !p.track(up) {
		up.Close()
		return
	}
	defer p.untrack(up)
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	// One direction ended: end the other (closing both unblocks it).
	c.Close()
	up.Close()
	<-done
}

// setCut cuts the proxy (every connection through it dropped, new ones
// refused) or restores it.
func (p *mongoProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
	}
}

func (p *mongoProxy) close() {
	p.ln.Close()
	p.setCut(true)
	p.wg.Wait()
}

// proxiedURI is uri with its one host replaced by the proxy's address, and
// a direct connection (a replica set's members would otherwise be reached
// at the addresses the set announces, around the proxy). ok is false when
// a TCP proxy cannot stand in for the server: several hosts, an SRV name,
// or TLS (the certificate names the server, not the proxy).
func proxiedURI(uri, proxyAddr string) (string, bool) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "mongodb" || u.Host == "" || strings.Contains(u.Host, ",") {
		return "", false
	}
	q := u.Query()
	for k, v := range q {
		if k = strings.ToLower(k); (k == "tls" || k == "ssl") && len(v) > 0 && strings.EqualFold(v[0], "true") {
			return "", false
		}
	}
	for k := range q {
		if strings.EqualFold(k, "directConnection") || strings.EqualFold(k, "replicaSet") {
			q.Del(k)
		}
	}
	q.Set("directConnection", "true")
	u.Host = proxyAddr
	u.RawQuery = q.Encode()
	return u.String(), true
}

// upstreamAddr is the host:port of a one-host mongodb:// URI.
func upstreamAddr(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return ""
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "27017")
	}
	return u.Host
}
