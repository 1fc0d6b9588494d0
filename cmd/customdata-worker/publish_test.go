package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// TestPublishSignsWithTheConfiguredSeed: `publish` with
// EVENT_SIGNING_SEED_FILE sends an event the worker's verifier accepts
// for that key; an unreadable seed file is named, its content never.
func TestPublishSignsWithTheConfiguredSeed(t *testing.T) {
	n := testsupport.StartNATS(t)
	_, js := n.Connect(t)
	ctx := testsupport.Context(t)
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "AUTH_EVENTS", Subjects: []string{"auth.events.>"}})
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	seedFile := filepath.Join(t.TempDir(), "auth.nk")
	if err := os.WriteFile(seedFile, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CUSTOMDATA_NATS_URL", n.URL)
	t.Setenv("CUSTOMDATA_MONGODB_URI", "mongodb://127.0.0.1:1/?directConnection=true")
	t.Setenv("CUSTOMDATA_EVENT_SIGNING_SEED_FILE", seedFile)
	var out, errOut bytes.Buffer
	if code := run([]string{"publish", "--user", "ada", "--op", "delete"}, &out, &errOut); code != 0 {
		t.Fatalf("publish exited %d: %s", code, errOut.String())
	}
	msg, err := stream.GetLastMsgForSubject(ctx, "auth.events.delete")
	if err != nil {
		t.Fatal(err)
	}
	v, err := events.NewVerifier([]events.TrustedSigner{{PublicKey: pub, Operations: []events.Operation{events.OperationDelete}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(events.DefaultAuthPrefix, msg.Subject, msg.Header, msg.Data); err != nil {
		t.Fatalf("the published event does not verify: %v", err)
	}

	t.Setenv("CUSTOMDATA_EVENT_SIGNING_SEED_FILE", seedFile+".missing")
	out.Reset()
	errOut.Reset()
	if code := run([]string{"publish", "--user", "ada"}, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), seedFile+".missing") {
		t.Fatalf("publish with a missing seed file exited %d: %s", code, errOut.String())
	}
	if strings.Contains(errOut.String()+out.String(), string(seed)) {
		t.Fatal("output shows the seed")
	}
}
