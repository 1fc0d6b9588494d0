package testsupport

import (
	"crypto/tls"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// StartMongoTLSProxy terminates TLS (cfg) in front of the single host of
// m.URI, the way a TLS-enabled mongod answers, and returns the address
// it listens on. The stand-in speaks no TLS itself; through this proxy a
// test drives the driver's TLS settings (tlsCAFile, tlsCertificateKeyFile)
// against a real handshake. It stops when the test ends.
func StartMongoTLSProxy(t testing.TB, m *Mongo, cfg *tls.Config) string {
	t.Helper()
	u, err := url.Parse(m.URI)
	if err != nil || strings.Contains(u.Host, ",") {
		t.Fatalf("TLS proxy: need a single-host MongoDB URI, got %q", m.URI)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	track := func(c ...net.Conn) {
		mu.Lock()
		conns = append(conns, c...)
		mu.Unlock()
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", u.Host)
			if err != nil {
				_ = c.Close()
				continue
			}
			track(c, s)
			// A failed handshake surfaces as the first Read's error and
			// closes both sides, as a server would.
			wg.Go(func() { _, _ = io.Copy(s, c); _ = s.Close() })
			wg.Go(func() { _, _ = io.Copy(c, s); _ = c.Close() })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}
