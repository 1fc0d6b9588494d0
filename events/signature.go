package events

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Signed auth events (optional). An auth service holding an Ed25519 nkey
// signs each event; the worker, given the public keys it trusts, refuses
// any event that is unsigned, altered, signed by a key it does not trust,
// or of an operation its key may not send. A leaked publish permission on
// the auth subjects then no longer lets anyone delete users' data: the
// key is needed too. See SECURITY.md for what it does not close.

// Headers of a signed event.
const (
	// HeaderSignature is the Ed25519 signature, base64url without
	// padding, over the subject and the body (see signedBytes).
	HeaderSignature = "Customdata-Signature"
	// HeaderSigner is the signer's public nkey (a user key, "U…").
	HeaderSigner = "Customdata-Signer"
)

// Rejection reasons of signature checks (Dlq-Reason values).
const (
	ReasonUnsigned            Reason = "unsigned"
	ReasonBadSignature        Reason = "bad_signature"
	ReasonUntrustedSigner     Reason = "untrusted_signer"
	ReasonOperationNotAllowed Reason = "operation_not_allowed"
	// ReasonMsgIDNotSigned: a signed event whose Nats-Msg-Id is not the
	// one its signature fixes (SignedMsgID): a replay under a new id.
	ReasonMsgIDNotSigned Reason = "msg_id_not_signed"
)

// SignedMsgID is the Nats-Msg-Id of a signed event: a digest of its
// signature header. The id is the signature's, not the event id, for two
// reasons. Nobody without the key can know it before the event is
// published, so an unsigned message sent ahead under the event's id
// cannot make JetStream drop the real one as a duplicate. And the worker
// accepts a signed event only under this id, so replaying it within the
// duplicate window, under any id, is de-duplicated or refused. Ed25519
// signatures are deterministic: a producer's retry of the same event
// signs the same bytes and gets the same id.
func SignedMsgID(signature string) string {
	sum := sha256.Sum256([]byte(signature))
	return "sig-" + base64.RawURLEncoding.EncodeToString(sum[:18])
}

// signatureDomain keeps a signature over an auth event from being valid
// for anything else signed with the same key (and the reverse).
const signatureDomain = "customdata-auth-event-v1"

// signedBytes is what is signed: the domain, the subject and the body,
// NUL-separated. The subject is in it so that a LOGIN's body and signature
// cannot be replayed on the DELETE subject.
func signedBytes(subject string, data []byte) []byte {
	b := make([]byte, 0, len(signatureDomain)+len(subject)+len(data)+2)
	b = append(b, signatureDomain...)
	b = append(b, 0)
	b = append(b, subject...)
	b = append(b, 0)
	return append(b, data...)
}

// Signer signs auth events with one nkey.
type Signer struct {
	kp  nkeys.KeyPair
	pub string
}

// NewSigner returns a Signer for seed, a user nkey seed ("SU…", as
// `nk -gen user` prints it). The error never shows the seed.
func NewSigner(seed []byte) (*Signer, error) {
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("%w: the seed cannot be read as an nkey seed", ErrInvalidSigningKey)
	}
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		kp.Wipe()
		return nil, fmt.Errorf("%w: the seed is not a user seed (SU…)", ErrInvalidSigningKey)
	}
	return &Signer{kp: kp, pub: pub}, nil
}

// LoadSigner reads an nkey user seed file (as `nk -gen user > auth.nk`
// writes it) and returns its Signer. Errors name the file, never its
// content.
func LoadSigner(path string) (*Signer, error) {
	seed, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("event signing seed: %w", err)
	}
	defer clear(seed)
	s, err := NewSigner(bytes.TrimSpace(seed))
	if err != nil {
		return nil, fmt.Errorf("event signing seed %s: %w", path, err)
	}
	return s, nil
}

// PublicKey is the key to list in the worker's TRUSTED_SIGNERS.
func (s *Signer) PublicKey() string { return s.pub }

// Sign sets the signature headers of msg for its subject and data, and its
// Nats-Msg-Id to SignedMsgID (replacing one set before): the worker
// accepts a signed event under no other id.
func (s *Signer) Sign(msg *nats.Msg) error {
	sig, err := s.kp.Sign(signedBytes(msg.Subject, msg.Data))
	if err != nil {
		return fmt.Errorf("sign auth event: %w", err)
	}
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	msg.Header.Set(HeaderSignature, base64.RawURLEncoding.EncodeToString(sig))
	msg.Header.Set(HeaderSigner, s.pub)
	msg.Header.Set(nats.MsgIdHdr, SignedMsgID(msg.Header.Get(HeaderSignature)))
	return nil
}

// TrustedSigner is a public key the worker accepts events from, and the
// operations it may send (none listed: all).
type TrustedSigner struct {
	PublicKey  string
	Operations []Operation
}

// ParseTrustedSigners reads a comma-separated list of public user keys,
// each optionally followed by the operations it may send, colon-separated:
// "UABC…,UDEF…:LOGIN:CREATE". Several keys at once allow rotation. The
// keys themselves are checked by NewVerifier.
func ParseTrustedSigners(list string) ([]TrustedSigner, error) {
	var out []TrustedSigner
	for _, entry := range strings.Split(list, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		parts := strings.Split(entry, ":")
		ts := TrustedSigner{PublicKey: parts[0]}
		for _, op := range parts[1:] {
			op = strings.ToUpper(strings.TrimSpace(op))
			if op == "" {
				return nil, fmt.Errorf("%w: trusted signer %q lists an empty operation", ErrInvalidSigningKey, entry)
			}
			ts.Operations = append(ts.Operations, Operation(op))
		}
		out = append(out, ts)
	}
	return out, nil
}

// Verifier checks the signature of each auth event against trusted keys.
type Verifier struct {
	keys map[string]trustedKey
}

type trustedKey struct {
	kp  nkeys.KeyPair
	ops []Operation // nil: all
}

// NewVerifier returns a Verifier trusting signers; it refuses an empty
// list, a key that is not a public user nkey, a key listed twice and an
// unknown operation.
func NewVerifier(signers []TrustedSigner) (*Verifier, error) {
	if len(signers) == 0 {
		return nil, fmt.Errorf("%w: no trusted signer", ErrInvalidSigningKey)
	}
	v := &Verifier{keys: make(map[string]trustedKey, len(signers))}
	for i, ts := range signers {
		if !nkeys.IsValidPublicUserKey(ts.PublicKey) {
			return nil, fmt.Errorf("%w: trusted signer #%d is not a public user nkey (U…)", ErrInvalidSigningKey, i+1)
		}
		if _, dup := v.keys[ts.PublicKey]; dup {
			return nil, fmt.Errorf("%w: trusted signer %s is listed twice", ErrInvalidSigningKey, ts.PublicKey)
		}
		for _, op := range ts.Operations {
			if !op.Valid() {
				return nil, fmt.Errorf("%w: trusted signer %s: unknown operation %q (want %v)", ErrInvalidSigningKey, ts.PublicKey, op, Operations())
			}
		}
		kp, err := nkeys.FromPublicKey(ts.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("%w: trusted signer %s: %w", ErrInvalidSigningKey, ts.PublicKey, err)
		}
		v.keys[ts.PublicKey] = trustedKey{kp: kp, ops: slices.Clone(ts.Operations)}
	}
	return v, nil
}

// Verify checks the event on subject with headers h and body data. The
// operation a key may send is read from the subject (under prefix), which
// the signature covers and the worker matches against the body. A failure
// is a *RejectError with its own reason.
func (v *Verifier) Verify(prefix, subject string, h nats.Header, data []byte) error {
	sig, signer := h.Get(HeaderSignature), h.Get(HeaderSigner)
	if sig == "" || signer == "" {
		return reject(ReasonUnsigned, "the event carries no %s and %s headers, and signed events are required", HeaderSignature, HeaderSigner)
	}
	key, ok := v.keys[signer]
	if !ok {
		return reject(ReasonUntrustedSigner, "signer %.64s is not among the trusted signers", signer)
	}
	// Strict: the last character of an unpadded signature has spare
	// bits, and a lenient decoder reads 16 spellings as one signature;
	// each would have its own SignedMsgID, and so a replay inside the
	// duplicate window would carry a valid signature under a new id.
	raw, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil || key.kp.Verify(signedBytes(subject, data), raw) != nil {
		return reject(ReasonBadSignature, "the signature of %s does not match the subject and body", signer)
	}
	if id := h.Get(nats.MsgIdHdr); id != SignedMsgID(sig) {
		return reject(ReasonMsgIDNotSigned, "the Nats-Msg-Id %.80q is not the one the signature fixes (%s): a replay under a new id is refused", id, SignedMsgID(sig))
	}
	if key.ops != nil {
		op, ok := OperationForSubject(prefix, subject)
		if !ok || !slices.Contains(key.ops, op) {
			return reject(ReasonOperationNotAllowed, "signer %s may send %v, not an event on %s", signer, key.ops, subject)
		}
	}
	return nil
}
