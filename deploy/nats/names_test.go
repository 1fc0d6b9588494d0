package natsdeploy_test

import (
	"slices"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/worker/authsync"
	"github.com/customdata-worker/customdata-worker/worker/notify"
)

// The names of the code's defaults, from which every expected subject is
// built: renaming a stream, bucket, consumer or prefix in the code fails
// TestConfigNamesFollowTheCode until nats.conf follows.
var (
	authPrefix    = events.DefaultAuthPrefix
	noticePrefix  = events.DefaultNoticePrefix
	dlqPrefix     = authsync.DefaultDeadLetterPrefix
	authStream    = authsync.DefaultAuthStream
	dlqStream     = authsync.DefaultDeadLetterStream
	noticeStream  = notify.DefaultNoticeStream
	durable       = authsync.DefaultAuthConsumer
	checkpointKV  = notify.DefaultNotifierCheckpointKV
	leaseKV       = notify.DefaultNotifierLeaseKV
	api           = "$JS.API."
	authSubjects  = authPrefix + ".>"
	issuerReading = []string{
		api + "STREAM.INFO." + noticeStream,
		api + "CONSUMER.CREATE." + noticeStream + ".*." + noticePrefix + ".>",
		api + "CONSUMER.MSG.NEXT." + noticeStream + ".*",
		api + "CONSUMER.DELETE." + noticeStream + ".*", // the consumer an ordered consumer's reset replaced
	}
)

// provisioned: what the worker may do to a stream it owns.
func provisioned(stream string) []string {
	return []string{api + "STREAM.INFO." + stream, api + "STREAM.CREATE." + stream, api + "STREAM.UPDATE." + stream}
}

// bucket: what the worker may do to a KV bucket it owns.
func bucket(name string) []string {
	return append(provisioned("KV_"+name), api+"DIRECT.GET.KV_"+name+".>", "$KV."+name+".>")
}

// wantPublish is each user's publish allow list, exactly.
func wantPublish() map[string][]string {
	worker := []string{api + "INFO"}
	for _, s := range []string{authStream, dlqStream, noticeStream} {
		worker = append(worker, provisioned(s)...)
	}
	worker = append(worker,
		api+"CONSUMER.CREATE."+authStream+"."+durable+".>",
		api+"CONSUMER.INFO."+authStream+"."+durable,
		api+"CONSUMER.MSG.NEXT."+authStream+"."+durable,
		"$JS.ACK."+authStream+"."+durable+".>")
	worker = append(append(worker, bucket(checkpointKV)...), bucket(leaseKV)...)
	worker = append(worker, dlqPrefix+".>", noticePrefix+".>")

	ops := []string{api + "INFO"}
	for _, s := range []string{authStream, dlqStream, noticeStream, "KV_" + checkpointKV, "KV_" + leaseKV} {
		ops = append(ops, api+"STREAM.INFO."+s)
	}
	ops = append(ops, api+"CONSUMER.INFO."+authStream+"."+durable,
		api+"CONSUMER.CREATE."+dlqStream+".>",
		api+"CONSUMER.INFO."+dlqStream+".*",
		api+"CONSUMER.MSG.NEXT."+dlqStream+".*",
		api+"CONSUMER.DELETE."+dlqStream+".*",
		api+"STREAM.MSG.GET."+dlqStream,
		api+"STREAM.MSG.DELETE."+dlqStream,
		authSubjects,
		api+"CONSUMER.CREATE."+noticeStream+".>",
		api+"CONSUMER.MSG.NEXT."+noticeStream+".*",
		api+"CONSUMER.DELETE."+noticeStream+".*")

	return map[string][]string{
		authService.user:     {authSubjects},
		workerRole.user:      worker,
		issuerRole.user:      issuerReading,
		referenceIssuer.user: append([]string{events.AuthSubject(authPrefix, events.OperationLogin)}, issuerReading...), // POST /login: LOGIN only
		opsRole.user:         ops,
		bridgeRole.user:      append(append(events.AuthSubjects(authPrefix), dlqPrefix+".>"), issuerReading...),
	}
}

// TestConfigNamesFollowTheCode: every user of nats.conf holds exactly the
// subjects built from the code's names, may subscribe to its own inbox
// prefix only (_INBOX_<user>),
// is denied nothing explicitly (what is not allowed is denied), and
// answers no requests.
func TestConfigNamesFollowTheCode(t *testing.T) {
	opts := loadConfig(t)
	if !opts.JetStream {
		t.Error("nats.conf does not enable JetStream")
	}
	if opts.NoAuthUser != "" {
		t.Errorf("nats.conf lets clients without credentials in as %q", opts.NoAuthUser)
	}
	got := map[string]*server.Permissions{}
	for _, u := range opts.Users {
		got[u.Username] = u.Permissions
		if u.Account == nil || u.Account.Name != "CUSTOMDATA" {
			t.Errorf("user %s is not in account CUSTOMDATA", u.Username)
		}
	}
	want := wantPublish()
	if len(got) != len(want) || len(opts.Nkeys) > 0 {
		t.Errorf("nats.conf has users %v (and %d nkeys), want exactly %d: %v", keys(got), len(opts.Nkeys), len(want), keys(want))
	}
	inboxes := map[string]string{}
	for _, r := range roles {
		inboxes[r.user] = r.inboxPrefix() + ".>"
	}
	for user, pub := range want {
		p := got[user]
		if p == nil || p.Publish == nil || p.Subscribe == nil {
			t.Errorf("user %s: missing, or without publish and subscribe permissions", user)
			continue
		}
		if !sameSet(p.Publish.Allow, pub) {
			t.Errorf("user %s may publish\n  %v\nwant\n  %v", user, p.Publish.Allow, pub)
		}
		if !sameSet(p.Subscribe.Allow, []string{inboxes[user]}) {
			t.Errorf("user %s may subscribe to %v, want only its own inbox %s", user, p.Subscribe.Allow, inboxes[user])
		}
		if len(p.Publish.Deny)+len(p.Subscribe.Deny) > 0 || p.Response != nil {
			t.Errorf("user %s has deny lists or allow_responses; the allow lists alone should say it", user)
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))
	return slices.Equal(a, b)
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
