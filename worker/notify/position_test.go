package notify

import (
	"testing"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
)

// TestFeedPositionRules: the counts in a row at one position and the
// verdicts they lead to.
func TestFeedPositionRules(t *testing.T) {
	a, b := []byte("token-a"), []byte("token-b")
	tests := []struct {
		name         string
		run          func(p *feedPosition)
		wantDistrust events.FlushReason
		wantTimeout  time.Duration // of the next open, base 1s
		wantWidening bool
	}{
		{"fresh", func(*feedPosition) {}, "", time.Second, false},
		{"one timeout doubles the limit", func(p *feedPosition) { p.openTimedOut(a) }, "", 2 * time.Second, true},
		{"the limit stops doubling at the bound", func(p *feedPosition) {
			for range maxOpenTimeouts + 2 {
				p.openTimedOut(a)
			}
		}, "", time.Second << (maxOpenTimeouts - 1), false},
		{"a timeout elsewhere counts afresh", func(p *feedPosition) {
			p.openTimedOut(a)
			p.openTimedOut(a)
			p.openTimedOut(b)
		}, "", 2 * time.Second, true},
		{"identical refusals at one position make it unreadable", func(p *feedPosition) {
			p.at = a
			for range maxPositionRefusals {
				p.refused(10334)
			}
		}, events.FlushPositionUnreadable, time.Second, false},
		{"another code starts the count over", func(p *feedPosition) {
			p.at = a
			for range maxPositionRefusals - 1 {
				p.refused(10334)
			}
			p.refused(2)
		}, "", time.Second, false},
		{"a move of the position starts the count over", func(p *feedPosition) {
			p.at = a
			for range maxPositionRefusals - 1 {
				p.refused(10334)
			}
			p.at = b
			p.refused(10334)
		}, "", time.Second, false},
		{"no position, no blame", func(p *feedPosition) {
			for range maxPositionRefusals + 1 {
				p.refused(10334)
			}
		}, "", time.Second, false},
		{"trusted again after failing from now too", func(p *feedPosition) {
			p.at = a
			for range maxPositionRefusals {
				p.refused(10334)
			}
			p.trustAgain()
		}, "", time.Second, false},
		{"an open clears timeouts and the verdict", func(p *feedPosition) {
			p.at = a
			p.openTimedOut(a)
			for range maxPositionRefusals {
				p.refused(10334)
			}
			p.opened(true)
		}, "", time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p feedPosition
			tt.run(&p)
			if p.distrust != tt.wantDistrust {
				t.Errorf("distrust = %q, want %q", p.distrust, tt.wantDistrust)
			}
			if got := p.openTimeout(time.Second); got != tt.wantTimeout {
				t.Errorf("next open timeout = %s, want %s", got, tt.wantTimeout)
			}
			if got := p.widening(); got != tt.wantWidening {
				t.Errorf("widening = %v, want %v", got, tt.wantWidening)
			}
		})
	}
}

// TestFeedPositionReportsTheVerdictOnce: the refusal that makes the
// position unreadable is reported (logged) once, not at every later one.
func TestFeedPositionReportsTheVerdictOnce(t *testing.T) {
	p := feedPosition{at: []byte("a")}
	reported := 0
	for range 2 * maxPositionRefusals {
		if p.refused(10334) {
			reported++
		}
	}
	if reported != 1 {
		t.Fatalf("the verdict was reported %d times, want once", reported)
	}
}
