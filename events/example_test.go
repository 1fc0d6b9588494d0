package events_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/embeddednats"
)

// An auth service publishes each authentication event once it happened.
// The worker (or an operator) provisions the stream; here it is created
// by hand on an embedded NATS server.
func ExamplePublisher() {
	dir, err := os.MkdirTemp("", "example-publisher")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = os.RemoveAll(dir) }()
	srv, err := embeddednats.Start(embeddednats.Options{StoreDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "AUTH_EVENTS", Subjects: []string{events.DefaultAuthPrefix + ".>"},
	}); err != nil {
		fmt.Println(err)
		return
	}

	pub, err := events.NewPublisher(js)
	if err != nil {
		fmt.Println(err)
		return
	}
	ev := events.NewAuthEvent(events.OperationLogin, "user-42", "local-userpass")
	ack, err := pub.Publish(ctx, ev)
	if err != nil {
		fmt.Println(err)
		return
	}
	// Publishing the same event again (a retry) is stored once.
	again, err := pub.Publish(ctx, ev)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ack.Stream, ack.Sequence, again.Duplicate)
	// Output: AUTH_EVENTS 1 true
}

// An issuer decodes each notice and drops what it cached.
func ExampleDecodeNotice() {
	data := []byte(`{"schemaVersion":1,"kind":"user","userId":"user-42","operation":"update",` +
		`"changedFields":["plan"],"publishedAt":"2026-01-02T03:04:05Z","someLaterField":true}`)
	n, err := events.DecodeNotice(data)
	if err != nil {
		fmt.Println(err)
		return
	}
	switch n.Kind {
	case events.NoticeFlushAll:
		fmt.Println("drop every cached user")
	case events.NoticeUser:
		fmt.Println("drop", n.UserID, "changed", n.ChangedFields)
	}
	// Output: drop user-42 changed [plan]
}
