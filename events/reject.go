package events

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Reason is a machine-readable rejection reason. It travels in the
// dead-letter headers, so its values are part of the contract.
type Reason string

// Rejection reasons, most important first: when an event has several
// problems, the first of these among them is its primary reason.
const (
	ReasonTooLarge           Reason = "too_large"
	ReasonMalformedJSON      Reason = "malformed_json"
	ReasonTooDeep            Reason = "too_deep"
	ReasonForbiddenKey       Reason = "forbidden_key"
	ReasonUnknownField       Reason = "unknown_field"
	ReasonUnsupportedVersion Reason = "unsupported_schema_version"
	ReasonMissingField       Reason = "missing_field"
	ReasonInvalidEventID     Reason = "invalid_event_id"
	ReasonUnknownOperation   Reason = "unknown_operation"
	ReasonInvalidProvider    Reason = "invalid_provider"
	ReasonInvalidUserID      Reason = "invalid_user_id"
	ReasonInvalidUserType    Reason = "invalid_user_type"
	ReasonInvalidTime        Reason = "invalid_time"
	ReasonSubjectMismatch    Reason = "subject_mismatch"
)

// rank orders reasons by importance (lower is more important); it picks
// the primary reason of a multi-problem rejection.
func (r Reason) rank() int {
	switch r {
	case ReasonTooLarge:
		return 0
	case ReasonMalformedJSON:
		return 1
	case ReasonTooDeep:
		return 2
	case ReasonForbiddenKey:
		return 3
	case ReasonUnknownField:
		return 4
	case ReasonUnsupportedVersion:
		return 5
	case ReasonMissingField:
		return 6
	case ReasonInvalidEventID:
		return 7
	case ReasonUnknownOperation:
		return 8
	case ReasonInvalidProvider:
		return 9
	case ReasonInvalidUserID:
		return 10
	case ReasonInvalidUserType:
		return 11
	case ReasonInvalidTime:
		return 12
	}
	return 13
}

// Problem is one thing wrong with an event.
type Problem struct {
	Reason Reason
	// Detail is a human explanation; it never contains field values that
	// could carry secrets or custom data, only names, positions and limits.
	Detail string
}

// MaxProblems is the most problems one rejection lists; the rest are
// counted (RejectError.Omitted).
const MaxProblems = 16

// RejectError says why an event was rejected. It lists every problem found
// in the event, so that a producer can fix them in one round; Reason and
// Detail are those of the most important one (the primary reason, used
// for the Dlq-Reason header and metrics).
type RejectError struct {
	Reason Reason
	Detail string
	// Problems are all the problems found, the primary one first, then the
	// others in the order they appear in the event. A syntax error or a
	// repeated key ends the reading: what lies after it is not checked. Nil for a RejectError
	// built by hand, which stands for its one problem.
	Problems []Problem
	// Omitted counts problems beyond MaxProblems that are not listed.
	Omitted int
}

// Error lists every problem: "invalid auth event: reason: detail; reason:
// detail".
func (e *RejectError) Error() string {
	if len(e.Problems) <= 1 && e.Omitted == 0 {
		return "invalid auth event: " + string(e.Reason) + ": " + e.Detail
	}
	var b strings.Builder
	b.WriteString("invalid auth event: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(string(p.Reason))
		b.WriteString(": ")
		b.WriteString(p.Detail)
	}
	if e.Omitted > 0 {
		b.WriteString("; and ")
		b.WriteString(strconv.Itoa(e.Omitted))
		b.WriteString(" more")
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalidEvent) true for every rejection.
func (e *RejectError) Is(target error) bool { return target == ErrInvalidEvent }

// ReasonOf returns the (primary) rejection reason carried by err, or "" if
// err is not a rejection.
func ReasonOf(err error) Reason {
	var re *RejectError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ""
}

func reject(r Reason, format string, args ...any) error {
	return &RejectError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// problems collects the problems of one event.
type problems struct {
	list    []Problem
	omitted int
}

func (ps *problems) add(r Reason, format string, args ...any) {
	if len(ps.list) >= MaxProblems {
		ps.omitted++
		return
	}
	ps.list = append(ps.list, Problem{Reason: r, Detail: fmt.Sprintf(format, args...)})
}

func (ps *problems) has(r Reason) bool {
	for _, p := range ps.list {
		if p.Reason == r {
			return true
		}
	}
	return false
}

// err returns the rejection for the problems collected, or nil.
func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	list := make([]Problem, 0, len(ps.list))
	primary := 0
	for i, p := range ps.list {
		if p.Reason.rank() < ps.list[primary].Reason.rank() {
			primary = i
		}
	}
	list = append(list, ps.list[primary])
	list = append(list, ps.list[:primary]...)
	list = append(list, ps.list[primary+1:]...)
	return &RejectError{Reason: list[0].Reason, Detail: list[0].Detail, Problems: list, Omitted: ps.omitted}
}
