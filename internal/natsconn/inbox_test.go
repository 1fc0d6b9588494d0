package natsconn_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/internal/natsconn"
)

// With InboxPrefix, replies come back under it; a server that lets the
// user subscribe only there (as deploy/nats/nats.conf does) serves it,
// and refuses the default _INBOX.
func TestInboxPrefix(t *testing.T) {
	perms := &server.Permissions{Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX_app.>", "svc"}},
		Publish: &server.SubjectPermission{Allow: []string{"svc"}}, Response: &server.ResponsePermission{MaxMsgs: 1}}
	url := startServer(t, &server.Options{Users: []*server.User{{Username: "app", Password: "pw-app-0123", Permissions: perms}}})
	cfg := natsconn.Config{URL: url, User: "app", Password: "pw-app-0123", InboxPrefix: "_INBOX_app"}
	nc, err := natsconn.Connect(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	replies := make(chan string, 1)
	if _, err := nc.Subscribe("svc", func(m *nats.Msg) {
		replies <- m.Reply
		_ = m.Respond([]byte("ok"))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Request("svc", nil, 5*time.Second); err != nil {
		t.Fatalf("request with the prefix: %v", err)
	}
	if r := <-replies; !strings.HasPrefix(r, "_INBOX_app.") {
		t.Fatalf("reply subject %q, want it under _INBOX_app.", r)
	}

	cfg.InboxPrefix = ""
	plain, err := natsconn.Connect(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Request("svc", nil, time.Second); err == nil {
		t.Fatal("a request answered on _INBOX, which the user may not subscribe to")
	}
}
