package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestStampedValuesWinOverTheToolchainsRecords(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.0",
		Main:      debug.Module{Path: "github.com/customdata-worker/customdata-worker", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}, {Key: "vcs.modified", Value: "true"},
		},
	}
	tests := []struct {
		name                string
		bi                  *debug.BuildInfo
		version, commit, at string
		want                Info
	}{
		{"stamped", bi, "v2.0.0", "def456", "2026-12-06T04:00:00Z",
			Info{Module: bi.Main.Path, Version: "v2.0.0", Commit: "def456", BuildTime: "2026-12-06T04:00:00Z", GoVersion: "go1.26.0"}},
		{"toolchain only", bi, "", "", "",
			Info{Module: bi.Main.Path, Version: "v1.2.3", Commit: "abc123", BuildTime: "2026-12-01T10:00:00Z", Dirty: true, GoVersion: "go1.26.0"}},
		{"nothing known", &debug.BuildInfo{GoVersion: "go1.26.0"}, "", "", "",
			Info{Version: "unknown", Commit: "unknown", BuildTime: "unknown", GoVersion: "go1.26.0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fromBuildInfo(tt.bi, tt.version, tt.commit, tt.at); got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
