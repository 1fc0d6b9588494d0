package worker

import (
	"bytes"
	"context"
	"testing"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
)

// TestStreamSessionReopensFromTheNewerPosition: after a transient error the
// session resumes from its own last acknowledged position when that is past
// the stored checkpoint, and from the store otherwise.
func TestStreamSessionReopensFromTheNewerPosition(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testCtx(t)
	n, err := NewNotifier(e.cfg, e.js, e.db, zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	kv, err := e.js.KeyValue(ctx, DefaultNotifierCheckpointKV)
	if err != nil {
		t.Fatal(err)
	}
	key := kvKeyForNamespace(e.cfg.Database, e.cfg.Collection)

	token := func(name string) []byte {
		b, err := bson.Marshal(bson.M{"_data": name})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	at := func(name string, sec uint32) *checkpoint {
		cp := &checkpoint{Token: token(name)}
		if sec > 0 {
			cp.ClusterTime = &events.ClusterTime{T: sec, I: 1}
		}
		return cp
	}
	const (
		storeNothing = "nothing"
		storeGarbage = "garbage"
	)
	for _, tc := range []struct {
		name    string
		saved   *checkpoint // written by this session (and stored, unless stored says otherwise)
		pending *checkpoint
		stored  *checkpoint // another writer's; nil: the store holds saved
		special string      // storeNothing, storeGarbage
		want    string
	}{
		{name: "no position of its own: the store", stored: at("other", 10), want: "other"},
		{name: "acknowledged past its own last write", saved: at("mine", 10), pending: at("ahead", 11), want: "ahead"},
		{name: "nothing acknowledged since its write", saved: at("mine", 10), want: "mine"},
		{name: "idle positions without cluster time", saved: at("mine", 0), pending: at("ahead", 0), want: "ahead"},
		{name: "another writer is ahead", pending: at("ahead", 11), stored: at("other", 12), want: "other"},
		{name: "another writer is behind", pending: at("ahead", 11), stored: at("other", 9), want: "ahead"},
		{name: "another writer, order unknown", pending: at("ahead", 0), stored: at("other", 9), want: "other"},
		{name: "store emptied", saved: at("mine", 10), pending: at("ahead", 11), special: storeNothing, want: "ahead"},
		{name: "store unusable", saved: at("mine", 10), special: storeGarbage, want: "mine"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStreamSession(n, 1, ctx)
			s.saved, s.pending = tc.saved, tc.pending
			switch {
			case tc.special == storeNothing:
				if err := kv.Purge(ctx, key); err != nil {
					t.Fatal(err)
				}
			case tc.special == storeGarbage:
				if _, err := kv.Put(ctx, key, []byte("garbage")); err != nil {
					t.Fatal(err)
				}
			case tc.stored != nil:
				if err := n.checkpoints.save(ctx, *tc.stored); err != nil {
					t.Fatal(err)
				}
			default:
				if err := n.checkpoints.save(ctx, *tc.saved); err != nil {
					t.Fatal(err)
				}
			}
			cp, found, err := s.startPosition(context.Background())
			if err != nil || !found {
				t.Fatalf("startPosition = found %v, %v", found, err)
			}
			if !bytes.Equal(cp.Token, token(tc.want)) {
				t.Fatalf("resumes at %s, want %s", bson.Raw(cp.Token), tc.want)
			}
		})
	}
}
