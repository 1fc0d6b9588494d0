package webhook

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// The Standard Webhooks specification's test vector
// (https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md,
// "Signature scheme"; the same vector is in every library's tests).
func TestSpecificationVector(t *testing.T) {
	v, err := NewVerifier([]string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
		WithClock(func() time.Time { return time.Unix(1614265330, 0) }))
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set(HeaderID, "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set(HeaderTimestamp, "1614265330")
	h.Set(HeaderSignature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	if err := v.Verify(h, []byte(`{"test": 2432232314}`)); err != nil {
		t.Fatalf("the specification's vector: %v", err)
	}
	if err := v.Verify(h, []byte(`{"test": 2432232315}`)); !errors.Is(err, ErrNoMatch) {
		t.Fatalf("one digit changed: %v, want ErrNoMatch", err)
	}
}

func newSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	// The form Supabase generates: echo "v1,whsec_$(openssl rand -base64 32)"
	// (https://supabase.com/docs/guides/self-hosting/self-hosted-auth-hooks).
	return "v1,whsec_" + base64.StdEncoding.EncodeToString(b)
}

// sign writes the headers as Supabase Auth does (internal/hooks/hookhttp
// in supabase/auth): one "v1,<sig>" per secret, joined with ", ".
func sign(t *testing.T, secrets []string, id string, ts time.Time, body []byte) http.Header {
	t.Helper()
	var sigs []string
	for _, s := range secrets {
		wh, err := standardwebhooks.NewWebhook(strings.TrimPrefix(s, "v1,"))
		if err != nil {
			t.Fatal(err)
		}
		sig, err := wh.Sign(id, ts, body)
		if err != nil {
			t.Fatal(err)
		}
		sigs = append(sigs, sig)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, strings.Join(sigs, ", "))
	return h
}

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	current, previous, other := newSecret(t), newSecret(t), newSecret(t)
	body := []byte(`{"user_id":"8ccaa7af-909f-44e7-84cb-67cdccb56be6","claims":{},"authentication_method":"password"}`)
	cases := []struct {
		name     string
		receiver []string // the bridge's secrets
		sender   []string // the identity server's
		at       time.Time
		body     []byte // what arrives (nil: what was signed)
		edit     func(http.Header)
		want     error
	}{
		{name: "good", receiver: []string{current}, sender: []string{current}, at: now},
		{name: "wrong secret", receiver: []string{current}, sender: []string{other}, at: now, want: ErrNoMatch},
		{name: "rotation: sender still on the previous secret", receiver: []string{current, previous}, sender: []string{previous}, at: now},
		{name: "rotation: sender signs with both, receiver knows the first", receiver: []string{current}, sender: []string{current, previous}, at: now},
		{name: "rotation: sender signs with both, receiver knows the second", receiver: []string{previous}, sender: []string{current, previous}, at: now},
		{name: "rotation done: the retired secret no longer verifies", receiver: []string{current}, sender: []string{previous}, at: now, want: ErrNoMatch},
		{name: "stale timestamp", receiver: []string{current}, sender: []string{current}, at: now.Add(-DefaultTolerance - time.Second), want: ErrStale},
		{name: "timestamp from the future", receiver: []string{current}, sender: []string{current}, at: now.Add(DefaultTolerance + time.Second), want: ErrStale},
		{name: "just within the tolerance", receiver: []string{current}, sender: []string{current}, at: now.Add(-DefaultTolerance)},
		{name: "tampered body", receiver: []string{current}, sender: []string{current}, at: now,
			body: []byte(strings.Replace(string(body), "password", "token_refresh", 1)), want: ErrNoMatch},
		{name: "tampered id", receiver: []string{current}, sender: []string{current}, at: now,
			edit: func(h http.Header) { h.Set(HeaderID, "msg_other") }, want: ErrNoMatch},
		{name: "timestamp changed after signing", receiver: []string{current}, sender: []string{current}, at: now,
			edit: func(h http.Header) { h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix()+1, 10)) }, want: ErrNoMatch},
		{name: "no signature header", receiver: []string{current}, sender: []string{current}, at: now,
			edit: func(h http.Header) { h.Del(HeaderSignature) }, want: ErrMissingHeaders},
		{name: "no id header", receiver: []string{current}, sender: []string{current}, at: now,
			edit: func(h http.Header) { h.Del(HeaderID) }, want: ErrMissingHeaders},
		{name: "timestamp not a number", receiver: []string{current}, sender: []string{current}, at: now,
			edit: func(h http.Header) { h.Set(HeaderTimestamp, "yesterday") }, want: ErrBadTimestamp},
		{name: "space-delimited as the specification writes it", receiver: []string{previous}, sender: []string{current}, at: now,
			edit: func(h http.Header) {
				wh, _ := standardwebhooks.NewWebhook(strings.TrimPrefix(previous, "v1,"))
				sig, _ := wh.Sign("msg_1", now, body)
				h.Set(HeaderSignature, h.Get(HeaderSignature)+" "+sig)
			}},
		{name: "another version's signature only", receiver: []string{current}, sender: []string{current}, at: now,
			edit: func(h http.Header) { h.Set(HeaderSignature, strings.Replace(h.Get(HeaderSignature), "v1,", "v2,", 1)) }, want: ErrNoMatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewVerifier(tc.receiver, WithClock(func() time.Time { return now }))
			if err != nil {
				t.Fatal(err)
			}
			h := sign(t, tc.sender, "msg_1", tc.at, body)
			if tc.edit != nil {
				tc.edit(h)
			}
			got := body
			if tc.body != nil {
				got = tc.body
			}
			err = v.Verify(h, got)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrUnverified) {
				t.Fatalf("Verify: %v, want %v (and ErrUnverified)", err, tc.want)
			}
		})
	}
}

func TestSecrets(t *testing.T) {
	good := newSecret(t)
	cases := []struct {
		name, list string
		n          int    // secrets parsed
		err        string // "" for none
	}{
		{name: "one, Supabase form", list: good, n: 1},
		{name: "the specification's form", list: strings.TrimPrefix(good, "v1,"), n: 1},
		{name: "two for rotation", list: good + "|" + newSecret(t), n: 2},
		{name: "spaces around", list: " " + good + " | " + newSecret(t) + " ", n: 2},
		{name: "no prefix", list: "c2VjcmV0", err: "must be"},
		{name: "not base64", list: "v1,whsec_not*base64", err: "not standard base64"},
		{name: "empty key", list: "v1,whsec_", err: "empty secret"},
		{name: "asymmetric", list: "v1a,whsec_c2VjcmV0", err: "asymmetric"},
		{name: "nothing", list: " | ", err: "no secret"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewVerifier(ParseSecretList(tc.list))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "c2VjcmV0") || strings.Contains(err.Error(), "not*base64") {
					t.Fatalf("the error quotes the secret: %v", err)
				}
				return
			}
			if err != nil || len(v.keys) != tc.n {
				t.Fatalf("NewVerifier: %v, %d keys, want %d", err, len(v.keys), tc.n)
			}
		})
	}
}

// Svix sends the same scheme under svix-* header names
// (https://docs.svix.com/receiving/verifying-payloads/how-manual, whose
// example is the specification's vector): verified the same, and the
// delivery's id and timestamp come back from the verified headers.
func TestSvixHeaders(t *testing.T) {
	v, err := NewVerifier([]string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
		WithClock(func() time.Time { return time.Unix(1614265330, 0) }))
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"test": 2432232314}`)
	h := http.Header{}
	h.Set(HeaderSvixID, "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set(HeaderSvixTimestamp, "1614265330")
	h.Set(HeaderSvixSignature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	d, err := v.VerifyDelivery(h, body)
	if err != nil {
		t.Fatalf("the vector under svix-* headers: %v", err)
	}
	if d.ID != "msg_p5jXN8AQM9LWM0D4loKWxJek" || !d.Timestamp.Equal(time.Unix(1614265330, 0)) {
		t.Fatalf("delivery = %+v", d)
	}
	// A svix-id that is not the one signed is not taken from webhook-id.
	h.Set(HeaderID, "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set(HeaderSvixID, "msg_forged")
	if _, err := v.VerifyDelivery(h, body); !errors.Is(err, ErrNoMatch) {
		t.Fatalf("svix-id changed: %v, want ErrNoMatch", err)
	}
	if _, err := v.VerifyDelivery(http.Header{}, body); !errors.Is(err, ErrMissingHeaders) {
		t.Fatalf("no headers: %v", err)
	}
}
