package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestPrintEnvListsEverySetting(t *testing.T) {
	var spec struct {
		Addr  string `envconfig:"ADDR" default:":80" desc:"listen address"`
		Level string `envconfig:"LOG_LEVEL" desc:"log level"`
	}
	var out bytes.Buffer
	if err := PrintEnv(&out, "APP", &spec); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := [][]string{{"VARIABLE", "DEFAULT", "DESCRIPTION"}, {"APP_ADDR", ":80", "listen address"}, {"APP_LOG_LEVEL", "log level"}}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i, fields := range want {
		if got := strings.Fields(lines[i]); strings.Join(got, " ") != strings.Join(strings.Fields(strings.Join(fields, " ")), " ") {
			t.Errorf("line %d = %q, want fields %q", i, lines[i], fields)
		}
	}
}

func TestNewLogger(t *testing.T) {
	for _, tc := range []struct {
		level, format string
		debugShown    bool
		json          bool
	}{
		{"", "json", false, true},
		{"nonsense", "json", false, true},
		{"debug", "json", true, true},
		{"info", "console", false, false},
	} {
		var out bytes.Buffer
		log := NewLogger(&out, "app1", tc.level, tc.format)
		log.Debug().Msg("dbg")
		log.Info().Msg("inf")
		s := out.String()
		if strings.Contains(s, "dbg") != tc.debugShown {
			t.Errorf("level %q: debug shown = %v, want %v", tc.level, !tc.debugShown, tc.debugShown)
		}
		if tc.json && !strings.Contains(s, `"app":"app1"`) {
			t.Errorf("format %q: %s lacks the app field", tc.format, s)
		}
		if !tc.json && strings.HasPrefix(strings.TrimSpace(s), "{") {
			t.Errorf("console format printed JSON: %s", s)
		}
	}
}
