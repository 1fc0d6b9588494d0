package worker

import (
	"context"
	"strings"
	"testing"
	"time"
)

// The errors of failed connects are logged by the startup retry: whatever
// the driver quotes of a connection string, no password may reach that
// text (NATS: see internal/natsconn).
func TestConnectErrorsCarryNoSecrets(t *testing.T) {
	mongoCases := []struct {
		name, uri, secret string
	}{
		{"slash in password", "mongodb://app:pa/ss9@127.0.0.1:1/?replicaSet=rs0", "pa/ss9"},
		{"at sign in password", "mongodb://app:pa@ss9@127.0.0.1:1/", "ss9"},
		{"bad escape in password", "mongodb://app:pa%zzss9@127.0.0.1:1/", "%zz"},
		{"colon in password", "mongodb://app:pa:ss9@127.0.0.1:1/", "ss9"},
		{"question mark in password, nothing listening", "mongodb://app:pa?ss9@127.0.0.1:1,127.0.0.1:2/?replicaSet=rs0", "ss9"},
		{"srv that cannot resolve", "mongodb+srv://app:pa/ss9@nonexistent.invalid/", "ss9"},
		{"unparseable", "mongodb://app:pa ss9@h 1/", "ss9"},
	}
	for _, tc := range mongoCases {
		t.Run("MongoDB "+tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			client, err := ConnectMongo(ctx, tc.uri, "test", 300*time.Millisecond)
			if err == nil {
				_ = client.Disconnect(ctx)
				t.Fatal("connect succeeded")
			}
			if strings.Contains(err.Error(), tc.secret) {
				t.Fatalf("error text carries the secret %q: %v", tc.secret, err)
			}
		})
	}
}
