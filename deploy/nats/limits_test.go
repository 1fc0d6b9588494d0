package natsdeploy_test

import (
	"testing"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// TestTheAccountCapsConsumers: the issuer role may create consumers on
// the notice stream (a durable one never expires), so the account caps
// them; the server reports the cap to every role.
func TestTheAccountCapsConsumers(t *testing.T) {
	url := startServer(t)
	info, err := connect(t, url, workerRole).js.AccountInfo(testsupport.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Limits.MaxConsumers; got != 1000 {
		t.Fatalf("account max consumers = %d, want 1000 (nats.conf)", got)
	}
}
