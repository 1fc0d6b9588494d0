package main

import (
	"bytes"
	stdlog "log"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// Refused handshakes stay at debug (a scanner cannot flood the log); what
// else net/http reports, such as a handler's panic, is a warning an
// operator sees at the default level.
func TestHTTPErrorLogLevels(t *testing.T) {
	var buf bytes.Buffer
	l := stdlog.New(httpErrorLog{zerolog.New(&buf).Level(zerolog.InfoLevel)}, "", 0)
	l.Print("http: TLS handshake error from 10.0.0.9:51234: remote error: tls: unknown certificate authority")
	if buf.Len() != 0 {
		t.Fatalf("a refused handshake was logged above debug: %s", buf.String())
	}
	l.Print("http: panic serving 10.0.0.9:51235: boom\ngoroutine 7 [running]:")
	if out := buf.String(); !strings.Contains(out, `"level":"warn"`) || !strings.Contains(out, "panic serving") {
		t.Fatalf("a handler panic was not warned: %q", out)
	}
}
