// Package buildinfo says which build of a binary is running: the module
// version, the commit and the build time. The Makefile's LDFLAGS and the
// Dockerfiles' build arguments stamp them with -ldflags -X; a binary built
// otherwise (go install, go run) falls back to what the Go toolchain
// records (runtime/debug.ReadBuildInfo).
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Stamped by -ldflags "-X <package>.version=… -X <package>.commit=…
// -X <package>.buildTime=…" (see the Makefile's LDFLAGS).
var (
	version   string
	commit    string
	buildTime string
)

// Info is one build's identity.
type Info struct {
	// Module is the main module's path.
	Module string `json:"module"`
	// Version is the module version (a tag, a pseudo-version, or
	// "(devel)" for a build from a work tree without stamping).
	Version string `json:"version"`
	// Commit is the VCS revision, "unknown" when neither stamped nor
	// recorded.
	Commit string `json:"commit"`
	// BuildTime is when the binary was built (stamped), or the commit
	// time the toolchain recorded; "unknown" otherwise.
	BuildTime string `json:"buildTime"`
	// Dirty is set when the toolchain recorded uncommitted changes.
	Dirty bool `json:"dirty,omitempty"`
	// GoVersion is the toolchain that built the binary.
	GoVersion string `json:"goVersion"`
}

// Read returns the running binary's build information: stamped values
// first, then the toolchain's records.
func Read() Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuildInfo(bi, version, commit, buildTime)
}

func fromBuildInfo(bi *debug.BuildInfo, stampedVersion, stampedCommit, stampedTime string) Info {
	info := Info{Version: stampedVersion, Commit: stampedCommit, BuildTime: stampedTime, GoVersion: runtime.Version()}
	if bi != nil {
		info.Module = bi.Main.Path
		info.GoVersion = bi.GoVersion
		if info.Version == "" {
			info.Version = bi.Main.Version
		}
		var vcsTime string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if info.Commit == "" {
					info.Commit = s.Value
				}
			case "vcs.time":
				vcsTime = s.Value
			case "vcs.modified":
				info.Dirty = stampedCommit == "" && s.Value == "true"
			}
		}
		if info.BuildTime == "" {
			info.BuildTime = vcsTime
		}
	}
	for _, f := range []*string{&info.Version, &info.Commit, &info.BuildTime} {
		if *f == "" {
			*f = "unknown"
		}
	}
	return info
}
