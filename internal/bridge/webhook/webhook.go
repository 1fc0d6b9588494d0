// Package webhook verifies Standard Webhooks signatures
// (https://www.standardwebhooks.com, the scheme Supabase Auth's HTTP hooks
// use): an HMAC-SHA256 over "<webhook-id>.<webhook-timestamp>.<body>" with
// a shared secret, sent base64 in webhook-signature as "v1,<signature>".
//
// The HMAC itself is the Standard Webhooks Go library's. This package adds
// what a receiver needs around it: several secrets at once (rotation), the
// timestamp tolerance with a clock of its own, a signature header written
// the way Supabase Auth writes it, and Svix's names of the three headers
// (svix-id, svix-timestamp, svix-signature: Svix, which sends Clerk's
// webhooks, is where the scheme comes from).
package webhook

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// The headers of a Standard Webhooks delivery.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// The same headers as Svix names them
// (https://docs.svix.com/receiving/verifying-payloads/how-manual): Svix
// sends these unless an account has them renamed to webhook-*, and its
// libraries read either, each svix-* header first.
const (
	HeaderSvixID        = "svix-id"
	HeaderSvixTimestamp = "svix-timestamp"
	HeaderSvixSignature = "svix-signature"
)

// DefaultTolerance is how far a delivery's timestamp may lie from the
// receiver's clock, either way: the specification's five minutes.
const DefaultTolerance = 5 * time.Minute

// Why a delivery was not verified; every one also wraps ErrUnverified.
var (
	ErrUnverified     = errors.New("webhook not verified")
	ErrMissingHeaders = errors.New("webhook-id, webhook-timestamp and webhook-signature are required")
	ErrBadTimestamp   = errors.New("webhook-timestamp is not an integer of seconds")
	ErrStale          = errors.New("webhook-timestamp outside the tolerance")
	ErrNoMatch        = errors.New("no signature matches a configured secret")
)

// Verifier checks deliveries against one or more secrets: a delivery
// passes when any of its signatures matches any secret, so a rotation can
// list the new and the old secret at once on both sides.
type Verifier struct {
	keys      []*standardwebhooks.Webhook
	tolerance time.Duration
	now       func() time.Time
}

// Option configures a Verifier.
type Option func(*Verifier)

// WithTolerance sets the timestamp tolerance (default DefaultTolerance).
func WithTolerance(d time.Duration) Option { return func(v *Verifier) { v.tolerance = d } }

// WithClock sets the clock the timestamp is checked against (default
// time.Now).
func WithClock(now func() time.Time) Option { return func(v *Verifier) { v.now = now } }

// NewVerifier parses secrets, each "v1,whsec_<standard base64>" (Supabase
// Auth's form) or "whsec_<standard base64>" (the specification's). Errors
// name the secret by its position, never by its value.
func NewVerifier(secrets []string, opts ...Option) (*Verifier, error) {
	v := &Verifier{tolerance: DefaultTolerance, now: time.Now}
	for _, o := range opts {
		o(v)
	}
	if v.tolerance <= 0 {
		return nil, errors.New("webhook: tolerance must be positive")
	}
	if len(secrets) == 0 {
		return nil, errors.New("webhook: no secret")
	}
	for i, s := range secrets {
		key, err := parseSecret(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("webhook: secret %d of %d: %w", i+1, len(secrets), err)
		}
		wh, err := standardwebhooks.NewWebhookRaw(key)
		if err != nil {
			return nil, fmt.Errorf("webhook: secret %d of %d: %w", i+1, len(secrets), err)
		}
		v.keys = append(v.keys, wh)
	}
	return v, nil
}

// ParseSecretList splits a list of secrets the way Supabase Auth's
// GOTRUE_HOOK_<NAME>_SECRETS does: separated by '|'.
func ParseSecretList(list string) []string {
	var out []string
	for _, s := range strings.Split(list, "|") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func parseSecret(s string) ([]byte, error) {
	if strings.HasPrefix(s, "v1a,") {
		return nil, errors.New("asymmetric (v1a) secrets are not supported: use a v1,whsec_ secret")
	}
	b64, ok := strings.CutPrefix(strings.TrimPrefix(s, "v1,"), "whsec_")
	if !ok {
		return nil, errors.New(`must be "v1,whsec_<base64>" or "whsec_<base64>"`)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("the part after whsec_ is not standard base64")
	}
	if len(key) == 0 {
		return nil, errors.New("empty secret")
	}
	return key, nil
}

// Delivery is what the signed headers of a verified delivery say.
type Delivery struct {
	// ID is the message id (webhook-id or svix-id): the sender keeps it
	// when it sends the same message again, so it makes retries
	// idempotent.
	ID string
	// Timestamp is when the sender made this attempt.
	Timestamp time.Time
}

// Verify checks one delivery: its three headers, its timestamp against
// the tolerance, and its signatures over body. The error wraps
// ErrUnverified and one of ErrMissingHeaders, ErrBadTimestamp, ErrStale,
// ErrNoMatch.
func (v *Verifier) Verify(h http.Header, body []byte) error {
	_, err := v.VerifyDelivery(h, body)
	return err
}

// VerifyDelivery is Verify that also returns what the verified headers
// say. Each header is read under its svix-* name first, then its
// webhook-* name, as Svix's libraries read them.
func (v *Verifier) VerifyDelivery(h http.Header, body []byte) (Delivery, error) {
	id, ts := header(h, HeaderSvixID, HeaderID), header(h, HeaderSvixTimestamp, HeaderTimestamp)
	sigs := signatures(h.Values(HeaderSvixSignature))
	if len(sigs) == 0 {
		sigs = signatures(h.Values(HeaderSignature))
	}
	if id == "" || ts == "" || len(sigs) == 0 {
		return Delivery{}, fmt.Errorf("%w: %w", ErrUnverified, ErrMissingHeaders)
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return Delivery{}, fmt.Errorf("%w: %w", ErrUnverified, ErrBadTimestamp)
	}
	at := time.Unix(secs, 0)
	if d := v.now().Sub(at); d > v.tolerance || d < -v.tolerance {
		return Delivery{}, fmt.Errorf("%w: %w (%s off)", ErrUnverified, ErrStale, d.Round(time.Second))
	}
	// The library reads the headers itself: give it the signatures as the
	// specification writes them, space-delimited.
	norm := http.Header{}
	norm.Set(HeaderID, id)
	norm.Set(HeaderTimestamp, ts)
	norm.Set(HeaderSignature, strings.Join(sigs, " "))
	for _, k := range v.keys {
		// The timestamp was checked above, against this Verifier's clock.
		if k.VerifyIgnoringTimestamp(body, norm) == nil {
			return Delivery{ID: id, Timestamp: at.UTC()}, nil
		}
	}
	return Delivery{}, fmt.Errorf("%w: %w", ErrUnverified, ErrNoMatch)
}

// header returns the first of names that h has.
func header(h http.Header, names ...string) string {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return v
		}
	}
	return ""
}

// signatures splits webhook-signature values into "v1,<sig>" items. The
// specification delimits them with spaces; Supabase Auth joins them with
// ", " ("v1,a, v1,b"), which leaves a comma after every signature but the
// last: a base64 signature never ends in one, so it is cut.
func signatures(values []string) []string {
	var out []string
	for _, v := range values {
		for _, f := range strings.Fields(v) {
			if f = strings.TrimRight(f, ","); f != "" {
				out = append(out, f)
			}
		}
	}
	return out
}
