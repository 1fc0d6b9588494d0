package main

import (
	"testing"

	"github.com/customdata-worker/customdata-worker/internal/natsconn"
)

// Every CUSTOMDATA_NATS_* setting reaches the NATS connection, in its own
// field.
func TestNATSSettingsReachTheConnection(t *testing.T) {
	for k, v := range map[string]string{
		"CUSTOMDATA_NATS_URL": "nats://n1:4222,nats://n2:4222", "CUSTOMDATA_NATS_USER": "app", "CUSTOMDATA_NATS_PASSWORD": "pw",
		"CUSTOMDATA_NATS_TOKEN": "tok", "CUSTOMDATA_NATS_NKEY_SEED_FILE": "/s/user.nk", "CUSTOMDATA_NATS_CREDS_FILE": "/s/app.creds",
		"CUSTOMDATA_NATS_TLS_CA": "/s/ca.pem", "CUSTOMDATA_NATS_TLS_CERT": "/s/cert.pem", "CUSTOMDATA_NATS_TLS_KEY": "/s/key.pem",
	} {
		t.Setenv(k, v)
	}
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := natsconn.Config{URL: "nats://n1:4222,nats://n2:4222", Name: appName, User: "app", Password: "pw", Token: "tok",
		NKeySeedFile: "/s/user.nk", CredsFile: "/s/app.creds", TLSCAFile: "/s/ca.pem", TLSCertFile: "/s/cert.pem", TLSKeyFile: "/s/key.pem"}
	if got := cfg.workerConfig(nil).NATS; got != want {
		t.Fatalf("NATS settings\n got %+v\nwant %+v", got, want)
	}
}
