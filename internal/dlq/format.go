package dlq

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints entries as the human form of `dlq list`.
func WriteTable(w io.Writer, entries []Entry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tREASON\tUSER\tDELIVERIES\tREDRIVES\tORIGINAL SUBJECT\tERROR")
	for _, e := range entries {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", e.Sequence, e.Time.Format(time.RFC3339), e.Reason,
			orDash(e.UserID), e.DeliveryCount, e.RedriveCount, orDash(e.OriginalSubject), oneLine(e.Error, 80))
	}
	return tw.Flush()
}

// WriteEntry prints one dead letter whole: the human form of `dlq show`.
func WriteEntry(w io.Writer, e Entry) error {
	var b strings.Builder
	fmt.Fprintf(&b, "sequence:          %d\n", e.Sequence)
	fmt.Fprintf(&b, "time:              %s\n", e.Time.Format(time.RFC3339Nano))
	fmt.Fprintf(&b, "subject:           %s\n", e.Subject)
	fmt.Fprintf(&b, "reason:            %s\n", e.Reason)
	fmt.Fprintf(&b, "error:             %s\n", orDash(e.Error))
	fmt.Fprintf(&b, "user:              %s\n", orDash(e.UserID))
	fmt.Fprintf(&b, "original subject:  %s\n", orDash(e.OriginalSubject))
	fmt.Fprintf(&b, "original stream:   %s (sequence %d)\n", orDash(e.OriginalStream), e.OriginalSequence)
	fmt.Fprintf(&b, "original msg id:   %s\n", orDash(e.OriginalMsgID))
	fmt.Fprintf(&b, "deliveries:        %d\n", e.DeliveryCount)
	fmt.Fprintf(&b, "redrives:          %d\n", e.RedriveCount)
	if e.TruncatedFrom > 0 {
		fmt.Fprintf(&b, "truncated:         body cut from %d bytes (cannot be redriven)\n", e.TruncatedFrom)
	}
	b.WriteString("headers:\n")
	keys := make([]string, 0, len(e.Headers))
	for k := range e.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range e.Headers[k] {
			fmt.Fprintf(&b, "  %s: %s\n", k, v)
		}
	}
	b.WriteString("body:\n")
	var pretty bytes.Buffer
	if json.Indent(&pretty, e.Data, "  ", "  ") == nil {
		b.WriteString("  " + pretty.String() + "\n")
	} else {
		fmt.Fprintf(&b, "  %q\n", e.Data)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// JSONEntry is an Entry with its body, for --json: the body as JSON when
// it is JSON, else as a string.
type JSONEntry struct {
	Entry
	Body json.RawMessage `json:"body,omitempty"`
}

// ForJSON returns e with its body for --json.
func ForJSON(e Entry) JSONEntry {
	if json.Valid(e.Data) {
		return JSONEntry{Entry: e, Body: e.Data}
	}
	s, _ := json.Marshal(string(e.Data))
	return JSONEntry{Entry: e, Body: s}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return orDash(s)
}
