package notify

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/provision"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func TestNotifierConfigDefaults(t *testing.T) {
	var c Config
	c.SetDefaults()
	if err := errors.Join(c.Validate(), c.ValidateWith(provision.Streams{})); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"prefix", c.SubjectPrefix, events.DefaultNoticePrefix},
		{"stream", c.Stream, "CUSTOMDATA_NOTICES"},
		{"subjects", c.noticeSubjects()[0], events.DefaultNoticePrefix + ".>"},
		{"max age", c.MaxAge, time.Hour},
		{"lease TTL", c.LeaseTTL, 10 * time.Second},
		{"oversize", c.OversizeBytes, 16384},
		{"pre-images", c.PreAndPostImages, false},
		{"stall after", c.StallAfter, 30 * time.Second},
		{"stream op timeout", c.feedOpTimeout(), time.Second + 7500*time.Millisecond},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	// The instance name is picked by New (hostname, random suffix), so
	// that defaults and Validate stay free of side effects.
	if c.InstanceID != "" || c.CheckpointBucket == c.LeaseBucket {
		t.Errorf("instance %q, buckets %q/%q", c.InstanceID, c.CheckpointBucket, c.LeaseBucket)
	}
	long := Config{LeaseTTL: 45 * time.Second}
	long.SetDefaults()
	if long.StallAfter != 90*time.Second || long.Validate() != nil {
		t.Errorf("stall after with a 45s lease = %s (%v), want 90s", long.StallAfter, long.Validate())
	}
	quick := Config{MaxAwaitTime: 200 * time.Millisecond, StallAfter: 2 * time.Second, LeaseTTL: time.Second}
	quick.SetDefaults()
	if got := quick.feedOpTimeout(); got != 1200*time.Millisecond {
		t.Errorf("stream op timeout with a 2s stall = %s, want 1.2s (grace at least 1s)", got)
	}
	// Notices are kept at least as long as the window de-duplicating them.
	short := Config{MaxAge: time.Minute}
	if err := short.ValidateWith(provision.Streams{}); err == nil || !strings.Contains(err.Error(), "exceeds max age") {
		t.Errorf("1m max age with the default 2m window: %v, want an error", err)
	}
	if err := short.ValidateWith(provision.Streams{DuplicateWindow: time.Minute}); err != nil {
		t.Errorf("1m max age with a 1m window: %v", err)
	}
}

func TestNotifierConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"wildcard prefix", func(c *Config) { c.SubjectPrefix = "a.*" }, "subject prefix"},
		{"dotted stream", func(c *Config) { c.Stream = "A.B" }, "stream name"},
		{"slash in the stream", func(c *Config) { c.Stream = "A/B" }, "stream name"},
		{"backslash in the stream", func(c *Config) { c.Stream = `A\B` }, "stream name"},
		{"bucket name", func(c *Config) { c.LeaseBucket = "a.b" }, "lease bucket"},
		{"same buckets", func(c *Config) { c.LeaseBucket = c.CheckpointBucket }, "must differ"},
		{"lease too short", func(c *Config) { c.LeaseTTL = time.Millisecond }, "lease TTL"},
		{"lease too long", func(c *Config) { c.LeaseTTL = time.Hour }, "lease TTL"},
		{"negative oversize", func(c *Config) { c.OversizeBytes = -1 }, "oversize"},
		{"negative interval", func(c *Config) { c.IdlePollInterval = -time.Second }, "idle poll"},
		{"stall within the lease TTL", func(c *Config) { c.StallAfter = c.LeaseTTL }, "stall after"},
		{"negative stall", func(c *Config) { c.StallAfter = -time.Second }, "stall after"},
	} {
		var c Config
		c.SetDefaults()
		tc.mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want an error about %q", tc.name, err, tc.want)
		}
	}
	var zero Config
	if err := zero.Validate(); err != nil {
		t.Errorf("the zero config does not validate: %v", err)
	}
}

func TestNewNamesTheInstance(t *testing.T) {
	_, js := testsupport.StartNATS(t).Connect(t)
	// No IO: the client connects on first use, which New does not make.
	client, err := mongo.Connect(options.Client().ApplyURI("mongodb://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	n, err := New(js, client.Database("d"), Config{}, WithData(customdata.Config{Collection: "c"}))
	if err != nil {
		t.Fatal(err)
	}
	if host, _ := os.Hostname(); n.cfg.InstanceID == "" || !strings.HasPrefix(n.cfg.InstanceID, host) {
		t.Fatalf("instance %q, want the hostname %q with a suffix", n.cfg.InstanceID, host)
	}
}
