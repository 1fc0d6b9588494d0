package bridge

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/customdata-worker/customdata-worker/issuer"
)

// Figures, not assertions (make bench): one hook call answered from the
// cache, end to end through the handler (signature check, decode, cache
// hit, encode), without the network.
func benchServer(b *testing.B, opts ...Option) *Server {
	b.Helper()
	data := newFakeData(b, map[string]string{
		supabaseUser: `{"_id":{"$oid":"621b2886c971ec914881d99a"},"userId":"` + supabaseUser + `","plan":"pro","locale":"en-GB","lastLogin":{"$date":"2026-11-20T10:15:30.123Z"}}`,
		"foo":        `{"_id":{"$oid":"621b2886c971ec914881d99b"},"userId":"foo","plan":"pro","locale":"en-GB"}`,
	})
	cache, err := issuer.NewCache(data, issuer.CacheConfig{TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	for _, u := range []string{supabaseUser, "foo"} {
		if _, err := cache.Get(context.Background(), u); err != nil {
			b.Fatal(err)
		}
	}
	s, err := New(cache, Config{}, opts...)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func BenchmarkSupabaseHit(b *testing.B) {
	sec := secret(b)
	s := benchServer(b, WithSupabase(verifier(b, sec)))
	h := s.Handler()
	body := fixture(b, "supabase/custom-access-token.json")
	req := supabaseCall(b, body, time.Now(), sec)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := req.Clone(context.Background())
		r.Body = nopBody(body)
		w := discard{h: http.Header{}}
		h.ServeHTTP(&w, r)
		if w.code != 200 {
			b.Fatalf("status %d", w.code)
		}
	}
}

func BenchmarkHydraHit(b *testing.B) {
	s := benchServer(b, WithHydra(HydraAuth{Keys: []string{hydraKey}}, false))
	h := s.Handler()
	body := fixture(b, "hydra/token-hook.json")
	req := hydraCall(b, body, "Authorization", "Bearer "+hydraKey)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := req.Clone(context.Background())
		r.Body = nopBody(body)
		w := discard{h: http.Header{}}
		h.ServeHTTP(&w, r)
		if w.code != 200 {
			b.Fatalf("status %d", w.code)
		}
	}
}

// discard is a ResponseWriter that keeps only the status.
type discard struct {
	h    http.Header
	code int
}

func (d *discard) Header() http.Header { return d.h }
func (d *discard) WriteHeader(c int)   { d.code = c }
func (d *discard) Write(p []byte) (int, error) {
	if d.code == 0 {
		d.code = 200
	}
	return len(p), nil
}
