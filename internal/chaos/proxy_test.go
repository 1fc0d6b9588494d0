package chaos

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

// TestMongoProxyCut: through the proxy bytes flow both ways; a cut drops
// the connections through it and refuses new ones; restored, it connects
// again.
func TestMongoProxyCut(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() { // an echo server
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	p, err := startMongoProxy(up.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	echo := func(c net.Conn) error {
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		_, err := bufio.NewReader(c).ReadString('\n')
		return err
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", p.addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := dial()
	if err := echo(c); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	p.setCut(true)
	if err := echo(c); err == nil {
		t.Fatal("a connection through a cut proxy still answers")
	}
	if err := echo(dial()); err == nil {
		t.Fatal("a cut proxy accepted a new connection through")
	}
	p.setCut(false)
	if err := echo(dial()); err != nil {
		t.Fatalf("restored: %v", err)
	}
}

func TestProxiedURI(t *testing.T) {
	for _, tc := range []struct {
		uri, want string
		ok        bool
	}{
		{"mongodb://127.0.0.1:27017/?directConnection=true", "mongodb://127.0.0.1:9/?directConnection=true", true},
		{"mongodb://u:p@db.example:27017/app?replicaSet=rs0&w=majority", "mongodb://u:p@127.0.0.1:9/app?directConnection=true&w=majority", true},
		{"mongodb://a:27017,b:27017/?replicaSet=rs0", "", false},
		{"mongodb+srv://cluster.example/", "", false},
		{"mongodb://db.example:27017/?tls=true", "", false},
		{"mongodb://db.example:27017/?ssl=TRUE", "", false},
	} {
		got, ok := proxiedURI(tc.uri, "127.0.0.1:9")
		if got != tc.want || ok != tc.ok {
			t.Errorf("proxiedURI(%q) = %q, %v; want %q, %v", tc.uri, got, ok, tc.want, tc.ok)
		}
	}
}
