package main

import (
	"reflect"
	"testing"

	"github.com/customdata-worker/customdata-worker/worker/authsync"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
	"github.com/customdata-worker/customdata-worker/worker/notify"
)

// The environment's defaults (the `env` listing, the README table) must be
// the packages' own: an unset variable means the same as a zero setting.
func TestEnvironmentDefaultsAreThePackagesDefaults(t *testing.T) {
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	wc := cfg.workerConfig(nil)

	data := customdata.Config{Database: wc.Data.Database, Collection: wc.Data.Collection}
	data.SetDefaults()
	got := wc.Data
	got.SetDefaults()
	if !reflect.DeepEqual(got, data) {
		t.Errorf("custom data: environment %+v\npackage     %+v", got, data)
	}

	var auth authsync.Config
	auth.SetDefaults()
	gotAuth := wc.Auth
	gotAuth.SetDefaults()
	if !reflect.DeepEqual(gotAuth, auth) {
		t.Errorf("auth: environment %+v\npackage     %+v", gotAuth, auth)
	}

	note := notify.Config{Database: wc.Notify.Database, Collection: wc.Notify.Collection}
	note.SetDefaults()
	gotNote := wc.Notify
	gotNote.SetDefaults()
	if !reflect.DeepEqual(gotNote, note) {
		t.Errorf("notifier: environment %+v\npackage     %+v", gotNote, note)
	}
}
