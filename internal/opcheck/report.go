// Package opcheck answers "would the worker run here?" against the real
// servers, for `customdata-worker check`: NATS reachable, authenticated,
// JetStream on and the streams, consumer and buckets as PROVISION=verify
// wants them (it runs that very verification); MongoDB reachable, a
// replica set or sharded cluster, the unique user-id index, pre-images
// where configured, a bounded sample of the collection (duplicated user
// ids, oversize documents) and the privileges the worker uses, tried where
// trying changes nothing. Every line's text is redacted of the configured
// secrets.
package opcheck

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/customdata-worker/customdata-worker/internal/redact"
)

// Status is the verdict of one check.
type Status string

// Statuses. Only Fail makes the report fail: Warn is something the worker
// handles itself (creates at startup) or that does not stop it.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
	// Skipped: not run because an earlier check failed.
	Skipped Status = "skipped"
)

// Result is one line of the report.
type Result struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
}

// Report is every check, in order.
type Report struct {
	// OK: no check failed; the worker would run (Offline: its
	// configuration is valid; no server was contacted).
	OK      bool     `json:"ok"`
	Offline bool     `json:"offline,omitempty"`
	Results []Result `json:"checks"`
}

func (r *Report) add(name string, st Status, format string, args ...any) {
	r.Results = append(r.Results, Result{Name: name, Status: st, Detail: fmt.Sprintf(format, args...)})
}

func (r *Report) finish(secrets []string) {
	r.OK = true
	for i := range r.Results {
		r.Results[i].Detail = redact.Text(r.Results[i].Detail, secrets...)
		if r.Results[i].Status == Fail {
			r.OK = false
		}
	}
}

var marks = map[Status]string{OK: "✓", Warn: "!", Fail: "✗", Skipped: "-"}

// WriteText prints the report for humans: one line per check, then the
// verdict.
func (r Report) WriteText(w io.Writer) error {
	for _, res := range r.Results {
		if _, err := fmt.Fprintf(w, "%s %s: %s\n", marks[res.Status], res.Name, res.Detail); err != nil {
			return err
		}
	}
	verdict := "check passed: the worker would run"
	if r.Offline {
		verdict = "check passed: the configuration is valid (no server contacted)"
	}
	if !r.OK {
		verdict = "check failed: the worker would not run (see ✗ above)"
	}
	_, err := fmt.Fprintln(w, verdict)
	return err
}

// WriteJSON prints the report as one JSON document.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
