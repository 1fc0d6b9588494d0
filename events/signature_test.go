package events

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

func newUserKey(t testing.TB) (seed []byte, pub string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ = kp.Seed()
	pub, _ = kp.PublicKey()
	return seed, pub
}

func signedMsg(t testing.TB, seed []byte, subject, body string) *nats.Msg {
	t.Helper()
	s, err := NewSigner(seed)
	if err != nil {
		t.Fatal(err)
	}
	msg := &nats.Msg{Subject: subject, Data: []byte(body)}
	if err := s.Sign(msg); err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestVerify(t *testing.T) {
	seedA, pubA := newUserKey(t)
	seedB, pubB := newUserKey(t)
	seedC, _ := newUserKey(t)
	v, err := NewVerifier([]TrustedSigner{{PublicKey: pubA}, {PublicKey: pubB, Operations: []Operation{OperationLogin}}})
	if err != nil {
		t.Fatal(err)
	}
	login, del := AuthSubject(DefaultAuthPrefix, OperationLogin), AuthSubject(DefaultAuthPrefix, OperationDelete)
	body := `{"id":"e1","operationType":"LOGIN"}`
	tests := []struct {
		name    string
		msg     func() *nats.Msg
		subject string // where it is delivered (default: where it was signed)
		want    Reason // "" accepted
	}{
		{"signed by a trusted key", func() *nats.Msg { return signedMsg(t, seedA, login, body) }, "", ""},
		{"second key (rotation), an operation it may send", func() *nats.Msg { return signedMsg(t, seedB, login, body) }, "", ""},
		{"no headers", func() *nats.Msg { return &nats.Msg{Subject: login, Data: []byte(body)} }, "", ReasonUnsigned},
		{"signer without signature", func() *nats.Msg {
			m := signedMsg(t, seedA, login, body)
			m.Header.Del(HeaderSignature)
			return m
		}, "", ReasonUnsigned},
		{"body altered after signing", func() *nats.Msg {
			m := signedMsg(t, seedA, login, body)
			m.Data = []byte(strings.Replace(body, "e1", "e2", 1))
			return m
		}, "", ReasonBadSignature},
		{"replayed on another subject", func() *nats.Msg { return signedMsg(t, seedA, login, body) }, del, ReasonBadSignature},
		{"signature of another key under a trusted signer's name", func() *nats.Msg {
			m := signedMsg(t, seedC, login, body)
			m.Header.Set(HeaderSigner, pubA)
			return m
		}, "", ReasonBadSignature},
		{"signature not base64", func() *nats.Msg {
			m := signedMsg(t, seedA, login, body)
			m.Header.Set(HeaderSignature, "!!!")
			return m
		}, "", ReasonBadSignature},
		{"untrusted key", func() *nats.Msg { return signedMsg(t, seedC, login, body) }, "", ReasonUntrustedSigner},
		{"operation the key may not send", func() *nats.Msg { return signedMsg(t, seedB, del, body) }, "", ReasonOperationNotAllowed},
		// Replayed under a new Nats-Msg-Id, JetStream's duplicate window
		// would not catch it: refused.
		{"replayed under a new Nats-Msg-Id", func() *nats.Msg {
			m := signedMsg(t, seedA, login, body)
			m.Header.Set(nats.MsgIdHdr, "e1")
			return m
		}, "", ReasonMsgIDNotSigned},
		// The last character of an unpadded 64-byte signature carries 4
		// spare bits: a lenient decoder would read another spelling as
		// the same signature, under a SignedMsgID of its own.
		{"signature respelled in its spare bits, under its own signed id", func() *nats.Msg {
			m := signedMsg(t, seedA, login, body)
			sig := m.Header.Get(HeaderSignature)
			last := strings.IndexByte(base64URLAlphabet, sig[len(sig)-1])
			respelled := sig[:len(sig)-1] + string(base64URLAlphabet[last^1])
			m.Header.Set(HeaderSignature, respelled)
			m.Header.Set(nats.MsgIdHdr, SignedMsgID(respelled))
			return m
		}, "", ReasonBadSignature},
		{"replayed without a Nats-Msg-Id", func() *nats.Msg {
			m := signedMsg(t, seedA, login, body)
			m.Header.Del(nats.MsgIdHdr)
			return m
		}, "", ReasonMsgIDNotSigned},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.msg()
			subject := m.Subject
			if tt.subject != "" {
				subject = tt.subject
			}
			err := v.Verify(DefaultAuthPrefix, subject, m.Header, m.Data)
			if got := ReasonOf(err); got != tt.want || (tt.want != "" && !errors.Is(err, ErrInvalidEvent)) {
				t.Fatalf("Verify = %v (reason %q), want reason %q", err, got, tt.want)
			}
		})
	}
}

func TestVerifierRefusesBadConfiguration(t *testing.T) {
	seed, pub := newUserKey(t)
	tests := []struct {
		name    string
		signers []TrustedSigner
	}{
		{"none", nil},
		{"a seed instead of a public key", []TrustedSigner{{PublicKey: string(seed)}}},
		{"an account key", []TrustedSigner{{PublicKey: "ABJHLOVMPA4CI6R5KLNGOB4GSLNIY7IOUPAJC4YFNDLQVIOBYQGUWVLA"}}},
		{"listed twice", []TrustedSigner{{PublicKey: pub}, {PublicKey: pub}}},
		{"unknown operation", []TrustedSigner{{PublicKey: pub, Operations: []Operation{"ERASE"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewVerifier(tt.signers)
			if !errors.Is(err, ErrInvalidSigningKey) {
				t.Fatalf("NewVerifier = %v, want ErrInvalidSigningKey", err)
			}
			if strings.Contains(err.Error(), string(seed)) {
				t.Fatalf("error shows the seed: %v", err)
			}
		})
	}
}

func TestNewSignerRefusesWhatIsNotAUserSeed(t *testing.T) {
	acct, _ := nkeys.CreateAccount()
	acctSeed, _ := acct.Seed()
	for _, seed := range [][]byte{[]byte("not a seed"), acctSeed} {
		_, err := NewSigner(seed)
		if !errors.Is(err, ErrInvalidSigningKey) || strings.Contains(err.Error(), string(seed)) {
			t.Fatalf("NewSigner(%.4s…) = %v, want ErrInvalidSigningKey without the seed", seed, err)
		}
	}
}

func TestParseTrustedSigners(t *testing.T) {
	got, err := ParseTrustedSigners(" UA , UB:login:Create ,")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].PublicKey != "UA" || got[0].Operations != nil ||
		got[1].PublicKey != "UB" || len(got[1].Operations) != 2 || got[1].Operations[1] != OperationCreate {
		t.Fatalf("ParseTrustedSigners = %+v", got)
	}
	if _, err := ParseTrustedSigners("UA:"); !errors.Is(err, ErrInvalidSigningKey) {
		t.Fatalf("an empty operation: %v", err)
	}
}

// FuzzVerify: whatever headers and body arrive, Verify never panics and
// accepts only what the trusted key signed.
func FuzzVerify(f *testing.F) {
	seed, pub := newUserKey(f)
	v, err := NewVerifier([]TrustedSigner{{PublicKey: pub}})
	if err != nil {
		f.Fatal(err)
	}
	subject := AuthSubject(DefaultAuthPrefix, OperationLogin)
	good := signedMsg(f, seed, subject, `{"id":"e1"}`)
	f.Add(good.Header.Get(HeaderSignature), pub, `{"id":"e1"}`)
	f.Add("", "", "")
	f.Add("AAAA", pub, `{}`)
	f.Fuzz(func(t *testing.T, sig, signer, body string) {
		h := nats.Header{}
		h.Set(HeaderSignature, sig)
		h.Set(HeaderSigner, signer)
		err := v.Verify(DefaultAuthPrefix, subject, h, []byte(body))
		if err == nil && (body != `{"id":"e1"}` || signer != pub) {
			t.Fatalf("accepted a body or signer that was never signed: %q by %q", body, signer)
		}
	})
}

const base64URLAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
