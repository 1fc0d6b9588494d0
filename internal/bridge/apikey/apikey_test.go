package apikey

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHeaderKey(t *testing.T) {
	cases := []struct {
		name   string
		header string // configured
		send   map[string][]string
		want   bool
	}{
		{"bearer", "", map[string][]string{"Authorization": {"Bearer k1"}}, true},
		{"bearer, scheme in any case, second key (rotation)", "Authorization", map[string][]string{"Authorization": {"bearer   k2 "}}, true},
		{"bearer, wrong key", "", map[string][]string{"Authorization": {"Bearer k3"}}, false},
		{"the key without its scheme", "", map[string][]string{"Authorization": {"k1"}}, false},
		{"basic instead of bearer", "", map[string][]string{"Authorization": {"Basic k1"}}, false},
		{"nothing", "", nil, false},
		{"own header", "X-API-Key", map[string][]string{"X-Api-Key": {"k1"}}, true},
		{"own header, bearer form is not the key", "X-API-Key", map[string][]string{"X-Api-Key": {"Bearer k1"}}, false},
		{"own header twice", "X-API-Key", map[string][]string{"X-Api-Key": {"k1", "k1"}}, false},
		{"own header, key sent as bearer instead", "X-API-Key", map[string][]string{"Authorization": {"Bearer k1"}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, err := NewHeaderKey(tc.header, []string{"k1", " k2 ", ""})
			if err != nil {
				t.Fatal(err)
			}
			if got := k.Authorized(http.Header(tc.send)); got != tc.want {
				t.Fatalf("Authorized = %v, want %v", got, tc.want)
			}
		})
	}
	if _, err := NewHeaderKey("", []string{" ", ""}); !errors.Is(err, ErrNoKey) {
		t.Fatalf("no key: %v", err)
	}
}

func TestBasic(t *testing.T) {
	b, err := NewBasic([]string{"kratos:s3cret", "kratos:n3w:with-colon"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, password string
		want           bool
	}{
		{"kratos", "s3cret", true},
		{"kratos", "n3w:with-colon", true},
		{"kratos", "wrong", false},
		{"other", "s3cret", false},
	} {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.SetBasicAuth(tc.user, tc.password)
		if got := b.Authorized(r); got != tc.want {
			t.Errorf("%s:%s: %v, want %v", tc.user, tc.password, got, tc.want)
		}
	}
	if b.Authorized(httptest.NewRequest(http.MethodPost, "/", nil)) {
		t.Error("no credentials accepted")
	}
	if _, err := NewBasic([]string{"no-colon-secret"}); err == nil || strings.Contains(err.Error(), "no-colon-secret") {
		t.Fatalf("a pair without a colon: %v (and never quoted)", err)
	}
}

func TestSetMatchesWholeValues(t *testing.T) {
	s, err := NewSet([]string{"Bearer abc"})
	if err != nil || s.Len() != 1 {
		t.Fatal(err)
	}
	if !s.Match("Bearer abc") || s.Match("Bearer ab") || s.Match("Bearer abcd") || s.Match("") {
		t.Fatal("Match is not an exact comparison")
	}
}
