package bridge

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

func hydraLoginServer(t *testing.T, pub Publisher) *Server {
	t.Helper()
	s, err := New(newFakeData(t, map[string]string{"foo": `{"userId":"foo","plan":"pro"}`}), Config{},
		WithHydra(HydraAuth{Keys: []string{hydraKey}}, false), WithLogins(pub, LoginConfig{Hydra: true}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func callHydra(t *testing.T, s *Server, body []byte, status int) {
	t.Helper()
	if w := serve(s, hydraCall(t, body, "Authorization", "Bearer "+hydraKey)); w.Code != status {
		t.Fatalf("status %d, want %d: %s", w.Code, status, w.Body)
	}
}

// The token hook's requests as Hydra marshals them
// (testdata/hydra/token-hook-authorization-code.json and
// token-hook-refresh.json; see testdata/README.md): an authorization code
// grant publishes one LOGIN of the session's subject at the login's
// auth_time, provider hydra; Hydra's retry of the same call the same id
// (stored once: TestHydraReplayedLoginStoredOnce); a refresh and a client
// credentials grant none; another authorization of the same user and
// client another id.
func TestHydraLoginPublishesLOGIN(t *testing.T) {
	pub := &publisher{}
	s := hydraLoginServer(t, pub)
	login := fixture(t, "hydra/token-hook-authorization-code.json")
	callHydra(t, s, login, 200)
	callHydra(t, s, login, 200) // Hydra retries a 5xx with the same body
	callHydra(t, s, fixture(t, "hydra/token-hook-refresh.json"), 200)
	callHydra(t, s, bytes.ReplaceAll(login, []byte(`"authorization_code"`), []byte(`"client_credentials"`)), 204)
	// The docs' example: an authorization code grant too, with no times
	// and no consent request (the snapshot Hydra's test records).
	callHydra(t, s, fixture(t, "hydra/token-hook.json"), 200)
	next := bytes.ReplaceAll(login, []byte("3f1e0a9c-6b7d-4e2a-9c15-8d4b2f6e7a10"), []byte("5b8d2f40-1c3e-4a7b-b9e6-0f2a4c6d8e13"))
	next = bytes.ReplaceAll(next, []byte("2026-11-20T10:15:02.503712Z"), []byte("2026-11-20T12:00:00.120001Z"))
	callHydra(t, s, next, 200)

	testsupport.Eventually(t, "four LOGINs published", func() bool { return len(pub.events()) == 4 })
	evs := pub.events()
	first := evs[0]
	if first.OperationType != events.OperationLogin || first.User.ID != "foo" || len(first.Providers) != 1 || first.Providers[0] != "hydra" ||
		!first.Time.Equal(time.Date(2026, 11, 20, 10, 15, 30, 0, time.UTC)) || !strings.HasPrefix(first.ID, "hydra:") {
		t.Fatalf("LOGIN %+v", first)
	}
	if evs[1].ID != first.ID {
		t.Fatalf("the retried call's LOGIN has id %s, the first %s", evs[1].ID, first.ID)
	}
	if evs[2].ID == first.ID || evs[3].ID == first.ID || evs[2].ID == evs[3].ID {
		t.Fatalf("distinct logins share an id: %s %s %s", first.ID, evs[2].ID, evs[3].ID)
	}
	if got := metric(t, s, "customdata_bridge_logins_total", map[string]string{"outcome": "published"}); got != 4 {
		t.Fatalf("published LOGINs counted: %v", got)
	}
}

func TestHydraLoginGrant(t *testing.T) {
	for _, tc := range []struct {
		grants []string
		login  bool
	}{
		{[]string{"authorization_code"}, true},
		{[]string{"urn:ietf:params:oauth:grant-type:device_code"}, true},
		{[]string{"password"}, true},
		{[]string{"refresh_token"}, false},
		{[]string{"authorization_code", "refresh_token"}, false},
		{[]string{"client_credentials"}, false},
		{[]string{"urn:ietf:params:oauth:grant-type:jwt-bearer"}, false},
		{[]string{"implicit"}, false},
		{nil, false},
	} {
		if got := HydraLoginGrant(tc.grants); got != tc.login {
			t.Errorf("HydraLoginGrant(%q) = %v, want %v", tc.grants, got, tc.login)
		}
	}
}

// Through the real events.Publisher on JetStream: a replayed login call
// publishes the same Nats-Msg-Id, which the auth stream's duplicate window
// stores once.
func TestHydraReplayedLoginStoredOnce(t *testing.T) {
	_, js := testsupport.StartNATS(t).Connect(t)
	ctx := testsupport.Context(t)
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "AUTH_EVENTS", Subjects: []string{events.DefaultAuthPrefix + ".>"}, Duplicates: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := events.NewPublisher(js)
	if err != nil {
		t.Fatal(err)
	}
	s := hydraLoginServer(t, pub)
	login := fixture(t, "hydra/token-hook-authorization-code.json")
	for range 3 {
		callHydra(t, s, login, 200)
	}
	testsupport.Eventually(t, "three publishes acknowledged", func() bool {
		return metric(t, s, "customdata_bridge_logins_total", map[string]string{"outcome": "published"}) == 3
	})
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("%d LOGINs stored, want 1", info.State.Msgs)
	}
	m, err := st.GetMsg(ctx, info.State.FirstSeq)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.Decode(m.Data)
	if err != nil || ev.User.ID != "foo" || m.Header.Get(jetstream.MsgIDHeader) != ev.ID || m.Subject != events.AuthSubject(events.DefaultAuthPrefix, events.OperationLogin) {
		t.Fatalf("stored %s on %s (%v): %s", m.Header.Get(jetstream.MsgIDHeader), m.Subject, err, m.Data)
	}
}

// A LOGIN is offered only once the token is answered with the data: a
// refused key or unreadable data publishes none.
func TestHydraLoginNotPublishedWhenRefused(t *testing.T) {
	pub := &publisher{}
	data := newFakeData(t, nil)
	data.err = errDown
	s, err := New(data, Config{Timeout: 50 * time.Millisecond}, WithHydra(HydraAuth{Keys: []string{hydraKey}}, false), WithLogins(pub, LoginConfig{Hydra: true}))
	if err != nil {
		t.Fatal(err)
	}
	login := fixture(t, "hydra/token-hook-authorization-code.json")
	if w := serve(s, hydraCall(t, login, "Authorization", "Bearer wrong")); w.Code != http.StatusUnauthorized {
		t.Fatalf("wrong key: status %d", w.Code)
	}
	if w := serve(s, hydraCall(t, login, "Authorization", "Bearer "+hydraKey)); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("data down: status %d", w.Code)
	}
	if n := len(s.logins.ch); n != 0 {
		t.Fatalf("%d LOGINs queued", n)
	}
	if _, err := New(data, Config{}, WithSupabase(verifier(t, secret(t))), WithLogins(pub, LoginConfig{Hydra: true})); err == nil {
		t.Fatal("Hydra LOGINs without the Hydra hook were accepted")
	}
	if _, err := New(data, Config{}, WithHydra(HydraAuth{Keys: []string{hydraKey}}, false), WithLogins(pub, LoginConfig{})); err == nil {
		t.Fatal("WithLogins naming no hook was accepted")
	}
}
