package natsdeploy_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/noticetail"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// refusedWait bounds each refused call: the server drops a request it
// refuses, so a JetStream call sees no answer and ends with its context.
const refusedWait = 500 * time.Millisecond

// TestEachRoleIsRefusedTheRest: with every resource in place (the worker
// provisioned them), what a role does beyond its job is refused by the
// server. The client sees a permission violation naming the subject,
// asynchronously (the error handler), and a JetStream call or publish
// gets no answer; a refused subscription returns at once and only the
// violation tells.
func TestEachRoleIsRefusedTheRest(t *testing.T) {
	url := startServer(t)
	startWorker(t, url, testsupport.MongoDB(t))

	publishEvent := func(op events.Operation) func(context.Context, *conn) error {
		return func(ctx context.Context, c *conn) error {
			pub, err := events.NewPublisher(c.js)
			if err != nil {
				return err
			}
			_, err = pub.Publish(ctx, events.NewAuthEvent(op, "ada", "local-userpass"))
			return err
		}
	}
	publish := func(subject string) func(context.Context, *conn) error {
		return func(ctx context.Context, c *conn) error {
			_, err := c.js.Publish(ctx, subject, []byte("{}"))
			return err
		}
	}
	subscribe := func(subject string) func(context.Context, *conn) error {
		return func(_ context.Context, c *conn) error {
			_, err := c.nc.SubscribeSync(subject)
			return err
		}
	}
	durableOn := func(stream, name string) func(context.Context, *conn) error {
		return func(ctx context.Context, c *conn) error {
			_, err := c.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: name})
			return err
		}
	}
	orderedOn := func(stream, filter string) func(context.Context, *conn) error {
		return func(ctx context.Context, c *conn) error {
			// A fixed name prefix, so that the refused subject is known.
			cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, NamePrefix: "peek"}
			_, err := c.js.OrderedConsumer(ctx, stream, cfg)
			return err
		}
	}
	openBucket := func(name string) func(context.Context, *conn) error {
		return func(ctx context.Context, c *conn) error {
			_, err := c.js.KeyValue(ctx, name)
			return err
		}
	}
	streamInfo := func(name string) func(context.Context, *conn) error {
		return func(ctx context.Context, c *conn) error {
			_, err := c.js.Stream(ctx, name)
			return err
		}
	}
	deleteStream := func(name string) func(context.Context, *conn) error {
		return func(ctx context.Context, c *conn) error { return c.js.DeleteStream(ctx, name) }
	}

	noticeSubject := events.UserNoticeSubject(noticePrefix, "ada")
	for _, tc := range []struct {
		name string
		as   role
		try  func(context.Context, *conn) error
		// op and subject: the violation the server reports.
		op, subject string
	}{
		{"issuer publishes a DELETE event", issuerRole, publishEvent(events.OperationDelete),
			"Publish", events.AuthSubject(authPrefix, events.OperationDelete)},
		{"issuer publishes a notice", issuerRole, publish(noticeSubject), "Publish", noticeSubject},
		{"issuer subscribes to notices directly", issuerRole, subscribe(noticePrefix + ".>"), "Subscription", noticePrefix + ".>"},
		{"issuer reads the auth events", issuerRole, orderedOn(authStream, authSubjects),
			"Publish", api + "CONSUMER.CREATE." + authStream + ".peek_1." + authSubjects},
		{"issuer looks at the auth stream", issuerRole, streamInfo(authStream), "Publish", api + "STREAM.INFO." + authStream},
		{"issuer makes a durable on the notice stream", issuerRole, durableOn(noticeStream, "mine"),
			"Publish", api + "CONSUMER.CREATE." + noticeStream + ".mine"},
		{"issuer opens the worker's checkpoint bucket", issuerRole, openBucket(checkpointKV),
			"Publish", api + "STREAM.INFO.KV_" + checkpointKV},
		{"reference issuer publishes a notice", referenceIssuer, publish(noticeSubject), "Publish", noticeSubject},
		{"reference issuer publishes a DELETE event", referenceIssuer, publishEvent(events.OperationDelete),
			"Publish", events.AuthSubject(authPrefix, events.OperationDelete)},
		{"reference issuer publishes a CREATE event", referenceIssuer, publishEvent(events.OperationCreate),
			"Publish", events.AuthSubject(authPrefix, events.OperationCreate)},
		{"bridge publishes a notice", bridgeRole, publish(noticeSubject), "Publish", noticeSubject},
		{"bridge publishes on another auth subject", bridgeRole, publish(authPrefix + ".update"), "Publish", authPrefix + ".update"},
		{"bridge reads the auth events", bridgeRole, orderedOn(authStream, authSubjects),
			"Publish", api + "CONSUMER.CREATE." + authStream + ".peek_1." + authSubjects},
		{"bridge reads the dead letters", bridgeRole, orderedOn(dlqStream, dlqPrefix+".>"),
			"Publish", api + "CONSUMER.CREATE." + dlqStream + ".peek_1." + dlqPrefix + ".>"},
		{"bridge looks at the dead-letter stream (to delete from it)", bridgeRole, streamInfo(dlqStream), "Publish", api + "STREAM.INFO." + dlqStream},

		{"auth service reads the notice stream", authService, streamInfo(noticeStream),
			"Publish", api + "STREAM.INFO." + noticeStream},
		{"auth service reads notices", authService, orderedOn(noticeStream, noticePrefix+".>"),
			"Publish", api + "CONSUMER.CREATE." + noticeStream + ".peek_1." + noticePrefix + ".>"},
		{"auth service makes a consumer on the auth stream", authService, durableOn(authStream, "peek"),
			"Publish", api + "CONSUMER.CREATE." + authStream + ".peek"},
		{"auth service subscribes to auth events", authService, subscribe(authSubjects), "Subscription", authSubjects},
		{"auth service publishes a notice", authService, publish(noticeSubject), "Publish", noticeSubject},
		{"auth service publishes a dead letter", authService, publish(dlqPrefix + ".forged"), "Publish", dlqPrefix + ".forged"},

		{"worker creates stream OTHER", workerRole, func(ctx context.Context, c *conn) error {
			_, err := c.js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}})
			return err
		}, "Publish", api + "STREAM.CREATE.OTHER"},
		{"worker deletes stream OTHER", workerRole, deleteStream("OTHER"), "Publish", api + "STREAM.DELETE.OTHER"},
		{"worker deletes its own auth stream", workerRole, deleteStream(authStream), "Publish", api + "STREAM.DELETE." + authStream},
		{"worker opens a bucket not its own", workerRole, openBucket("OTHER"), "Publish", api + "STREAM.INFO.KV_OTHER"},
		{"worker writes a bucket not its own", workerRole, publish("$KV.OTHER.key"), "Publish", "$KV.OTHER.key"},
		{"worker makes another consumer on the auth stream", workerRole, durableOn(authStream, "other"),
			"Publish", api + "CONSUMER.CREATE." + authStream + ".other"},
		{"worker publishes an auth event", workerRole, publishEvent(events.OperationLogin),
			"Publish", events.AuthSubject(authPrefix, events.OperationLogin)},

		{"operator updates the auth stream", opsRole, func(ctx context.Context, c *conn) error {
			_, err := c.js.UpdateStream(ctx, jetstream.StreamConfig{Name: authStream, Subjects: []string{authSubjects}})
			return err
		}, "Publish", api + "STREAM.UPDATE." + authStream},
		{"operator takes the worker's lease", opsRole, publish("$KV." + leaseKV + ".lease"), "Publish", "$KV." + leaseKV + ".lease"},
		{"operator publishes a notice", opsRole, publish(noticeSubject), "Publish", noticeSubject},

		// Replies: each role only under its own inbox prefix.
		{"issuer reads the worker's replies (its fetched auth events)", issuerRole,
			subscribe(workerRole.inboxPrefix() + ".>"), "Subscription", workerRole.inboxPrefix() + ".>"},
		{"auth service reads every reply", authService, subscribe("_INBOX.>"), "Subscription", "_INBOX.>"},
		{"worker reads the operator's replies", workerRole, subscribe(opsRole.inboxPrefix() + ".>"), "Subscription", opsRole.inboxPrefix() + ".>"},
		{"reference issuer reads the auth service's replies", referenceIssuer,
			subscribe(authService.inboxPrefix() + ".>"), "Subscription", authService.inboxPrefix() + ".>"},
		{"operator reads the issuer's replies", opsRole, subscribe(issuerRole.inboxPrefix() + ".>"), "Subscription", issuerRole.inboxPrefix() + ".>"},
		{"issuer reads every inbox prefix", issuerRole, subscribe("_INBOX_*.>"), "Subscription", "_INBOX_*.>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := connect(t, url, tc.as)
			ctx, cancel := context.WithTimeout(context.Background(), refusedWait)
			defer cancel()
			err := tc.try(ctx, c)
			if tc.op == "Subscription" {
				if err != nil {
					t.Fatalf("subscribe: %v (a refused subscription is reported asynchronously)", err)
				}
			} else if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v, want no answer (context deadline exceeded)", err)
			}
			c.waitRefused(t, tc.op, tc.subject)
		})
	}
}

// TestRepliesReachOnlyTheirRole: while the worker fetches auth events
// (delivered to its inbox), the issuer cannot subscribe to that inbox, so
// it sees none of them; and a client left on the default _INBOX prefix is
// refused its reply subscription and gets no answer, instead of reading
// replies in a space every role shares.
func TestRepliesReachOnlyTheirRole(t *testing.T) {
	url := startServer(t)
	startWorker(t, url, testsupport.MongoDB(t))
	ctx := testsupport.Context(t)

	spy := connect(t, url, issuerRole)
	sub, err := spy.nc.SubscribeSync(workerRole.inboxPrefix() + ".>")
	if err != nil {
		t.Fatal(err)
	}
	spy.waitRefused(t, "Subscription", workerRole.inboxPrefix()+".>")
	auth := connect(t, url, authService)
	pub, err := events.NewPublisher(auth.js)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, events.NewAuthEvent(events.OperationCreate, "ada", "local-userpass")); err != nil {
		t.Fatalf("auth service publishing: %v", err)
	}
	// The worker fetched and applied it: its notice for ada is out.
	ops := connect(t, url, opsRole)
	errSeen := errors.New("seen")
	err = noticetail.Follow(ctx, ops.js, noticetail.Options{Stream: noticeStream, Prefix: noticePrefix, Since: time.Hour, UserID: "ada"},
		func(l noticetail.Line) error {
			if l.Notice.UserID == "ada" {
				return errSeen
			}
			return nil
		})
	if !errors.Is(err, errSeen) {
		t.Fatalf("no notice for ada: %v", err)
	}
	if m, err := sub.NextMsg(100 * time.Millisecond); err == nil {
		t.Fatalf("the issuer read a reply sent to the worker: %s %q", m.Subject, m.Data)
	}

	for _, r := range roles {
		t.Run(r.user+" on the default prefix", func(t *testing.T) {
			c := connectWith(t, url, r) // no CustomInboxPrefix: _INBOX
			cctx, cancel := context.WithTimeout(context.Background(), refusedWait)
			defer cancel()
			if _, err := c.js.AccountInfo(cctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("JetStream call on _INBOX: %v, want no answer", err)
			}
			testsupport.Eventually(t, "the refusal of its _INBOX subscription", func() bool {
				for _, v := range c.violations() {
					if strings.Contains(v, `Subscription to "_INBOX.`) {
						return true
					}
				}
				return false
			})
		})
	}
}

// TestCredentialsAreRequired: no anonymous user, and a role's password
// opens no other role.
func TestCredentialsAreRequired(t *testing.T) {
	url := startServer(t)
	for name, opts := range map[string][]nats.Option{
		"no credentials":            nil,
		"worker with the issuer's":  {nats.UserInfo(workerRole.user, issuerRole.password())},
		"ops with the worker's":     {nats.UserInfo(opsRole.user, workerRole.password())},
		"unknown user":              {nats.UserInfo("admin", workerRole.password())},
		"issuer with no password":   {nats.UserInfo(issuerRole.user, "")},
		"auth service with the ops": {nats.UserInfo(authService.user, opsRole.password())},
	} {
		t.Run(name, func(t *testing.T) {
			nc, err := nats.Connect(url, append(opts, nats.NoReconnect())...)
			if err == nil {
				nc.Close()
			}
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Fatalf("connect = %v, want %v", err, nats.ErrAuthorization)
			}
		})
	}
}
