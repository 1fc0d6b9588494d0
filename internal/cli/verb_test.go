package cli

import (
	"bytes"
	"flag"
	"io"
	"slices"
	"testing"
)

func TestParseVerb(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantVerb string
		wantRest []string
		wantCode int
		wantOK   bool
		wantOut  string
	}{
		{"no verb runs", nil, "run", nil, 0, true, ""},
		{"a verb and its arguments", []string{"dlq", "list", "--json"}, "dlq", []string{"list", "--json"}, 0, true, ""},
		{"the binary's flag before the verb", []string{"-worker", "bin/w", "demo"}, "demo", []string{}, 0, true, ""},
		{"help", []string{"-h"}, "", nil, 0, false, "usage\n"},
		{"an unknown flag", []string{"--frobnicate"}, "", nil, 2, false, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("app", flag.ContinueOnError)
			fs.String("worker", "", "")
			var stderr bytes.Buffer
			verb, rest, code, ok := ParseVerb(fs, tt.args, func(w io.Writer) { _, _ = io.WriteString(w, "usage\n") }, &stderr)
			if verb != tt.wantVerb || !slices.Equal(rest, tt.wantRest) || code != tt.wantCode || ok != tt.wantOK {
				t.Fatalf("ParseVerb = %q %q %d %v, want %q %q %d %v", verb, rest, code, ok, tt.wantVerb, tt.wantRest, tt.wantCode, tt.wantOK)
			}
			if !bytes.Contains(stderr.Bytes(), []byte(tt.wantOut)) {
				t.Errorf("stderr %q, want it to contain %q", stderr.String(), tt.wantOut)
			}
		})
	}
}
