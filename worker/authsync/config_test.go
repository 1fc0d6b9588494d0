package authsync

import (
	"strings"
	"testing"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
)

func TestAuthConfigDefaults(t *testing.T) {
	var c Config
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Stream", c.Stream, "AUTH_EVENTS"},
		{"SubjectPrefix", c.SubjectPrefix, events.DefaultAuthPrefix},
		{"Consumer", c.Consumer, "customdata-worker"},
		{"AckWait", c.AckWait, 10 * time.Second},
		{"MaxAckPending", c.MaxAckPending, 20000},
		{"CoalesceWindow", c.CoalesceWindow, 10000},
		{"MaxDeliver", c.MaxDeliver, 10},
		{"BatchSize", c.BatchSize, 500},
		{"BatchWait", c.BatchWait, 200 * time.Millisecond},
		{"DeadLetterStream", c.DeadLetterStream, "AUTH_EVENTS_DLQ"},
		{"DeadLetterPrefix", c.DeadLetterPrefix, "auth.deadletter"},
		{"RetryMaxInterval", c.RetryMaxInterval, 10 * time.Second},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if len(c.BackOff) == 0 {
		t.Error("BackOff has no default")
	}
}

func TestAuthConfigValidate(t *testing.T) {
	cases := []struct {
		name    string
		mut     func(*Config)
		wantErr string
	}{
		{"zero value", func(*Config) {}, ""},
		{"dotted stream", func(c *Config) { c.Stream = "a.b" }, "stream name"},
		{"same streams", func(c *Config) { c.DeadLetterStream = "AUTH_EVENTS" }, "must differ"},
		{"wildcard prefix", func(c *Config) { c.SubjectPrefix = "auth.*" }, "subject prefix"},
		{"overlapping prefixes", func(c *Config) { c.DeadLetterPrefix = "auth.events.dlq" }, "overlap"},
		{"equal prefixes", func(c *Config) { c.DeadLetterPrefix = "auth.events" }, "overlap"},
		{"tiny ack wait", func(c *Config) { c.AckWait = time.Millisecond }, "ack wait"},
		{"unbounded ack pending", func(c *Config) { c.MaxAckPending = -1 }, "max ack pending"},
		{"ack pending below batch", func(c *Config) { c.MaxAckPending = 10 }, "batch size"},
		{"batch too big", func(c *Config) { c.BatchSize = 5000; c.MaxAckPending = 10000 }, "batch size"},
		{"window below batch", func(c *Config) { c.CoalesceWindow = 100 }, "coalesce window"},
		{"window beyond ack pending", func(c *Config) { c.CoalesceWindow = 30000 }, "coalesce window"},
		{"window defaults within a small ack pending", func(c *Config) { c.MaxAckPending = 600 }, ""},
		{"batch wait beyond ack wait", func(c *Config) { c.BatchWait = time.Minute }, "batch wait"},
		{"negative backoff", func(c *Config) { c.BackOff = []time.Duration{-time.Second} }, "backoff"},
		{"negative max bytes", func(c *Config) { c.MaxBytes = -1 }, "max bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			tc.mut(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate = %v, want an error about %q", err, tc.wantErr)
			}
		})
	}
}
