package main

import (
	"reflect"
	"testing"

	"github.com/customdata-worker/customdata-worker/worker"
	"github.com/customdata-worker/customdata-worker/worker/authsync"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
	"github.com/customdata-worker/customdata-worker/worker/notify"
)

// The environment's defaults (the `env` listing, the README table) must be
// the packages' own: an unset variable means the same as a zero setting.
// The packages are the only source of defaults (those shared with issuers
// come from package events); the envconfig tags repeat them for `env` and
// this test keeps them equal, database and collection included.
func TestEnvironmentDefaultsAreThePackagesDefaults(t *testing.T) {
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	wc := cfg.workerConfig(nil)
	same := func(what string, got, want any, setDefaults func()) {
		t.Helper()
		setDefaults()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: environment %+v\npackage     %+v", what, got, want)
		}
	}

	var data customdata.Config
	gotData := wc.Data
	same("custom data", &gotData, &data, func() { data.SetDefaults(); gotData.SetDefaults() })

	var streams worker.Streams
	gotStreams := wc.Streams
	same("streams", &gotStreams, &streams, func() { streams.SetDefaults(); gotStreams.SetDefaults() })

	var auth authsync.Config
	gotAuth := wc.Auth
	same("auth", &gotAuth, &auth, func() { auth.SetDefaults(); gotAuth.SetDefaults() })

	var note notify.Config
	gotNote := wc.Notify
	same("notifier", &gotNote, &note, func() { note.SetDefaults(); gotNote.SetDefaults() })
}
