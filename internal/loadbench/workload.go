package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/events"
)

// Names the harness gives the worker and the stand-in contenders, so that
// it can find their streams and consumers.
const (
	authStream       = "AUTH_EVENTS"
	authPrefix       = events.DefaultAuthPrefix
	authConsumer     = "customdata-worker"
	deadLetterStream = "AUTH_EVENTS_DLQ"
	noticeStream     = events.DefaultNoticeStream
	noticePrefix     = events.DefaultNoticePrefix
	collectionName   = events.DefaultCollection
	userIDField      = events.DefaultUserIDField
	provider         = "local-userpass"
)

// backlog is a set of LOGIN events, encoded on the wire exactly as
// events.Publisher encodes them, and the state of MongoDB they must leave:
// each user's lastLogin is the time of its newest event.
type backlog struct {
	// users are every user id that has a document before the drain; the
	// skewed workload seeds users that never log in too.
	users []string
	// events are the encoded events in publish order; ids their event ids.
	events [][]byte
	ids    []string
	// final maps each user that logged in to the newest event time.
	final map[string]time.Time
}

// userID names user i; fixed width keeps documents the same size.
func userID(i int) string { return fmt.Sprintf("user-%07d", i) }

// newBacklog builds n LOGIN events. With users == 0 every event has its
// own user; otherwise users are drawn from a Zipf distribution with
// exponent s over that many users (user 0 the most frequent). Event times
// grow by 1 ms per event and lie in the past, so the final state does not
// depend on the order a contender applies them in.
func newBacklog(n, users int, s float64, seed uint64) (*backlog, error) {
	b := &backlog{events: make([][]byte, 0, n), ids: make([]string, 0, n), final: map[string]time.Time{}}
	pick := func(i int) int { return i }
	if users == 0 {
		users = n
	} else {
		z := rand.NewZipf(rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), s, 1, uint64(users-1))
		pick = func(int) int { return int(z.Uint64()) }
	}
	b.users = make([]string, users)
	for i := range b.users {
		b.users[i] = userID(i)
	}
	base := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Millisecond)
	for i := range n {
		u := b.users[pick(i)]
		ev := events.NewAuthEvent(events.OperationLogin, u, provider)
		ev.User.Type = "normal"
		ev.User.Identities = []events.Identity{{ID: "id-" + u, ProviderType: provider}}
		ev.User.Data = map[string]any{"email": u + "@example.com", "name": "Bench User"}
		ev.Time = base.Add(time.Duration(i) * time.Millisecond)
		data, err := json.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("encode event %d: %w", i, err)
		}
		// The worker's own decoder must accept what we publish; checking a
		// few is enough, every event has the same shape.
		if i < 10 {
			if _, err := events.Decode(data); err != nil {
				return nil, fmt.Errorf("event %d is not one the worker accepts: %w", i, err)
			}
		}
		b.events = append(b.events, data)
		b.ids = append(b.ids, ev.ID)
		b.final[u] = ev.Time
	}
	return b, nil
}

// authStreamConfig is the stream the worker provisions (file storage,
// limits retention, de-duplication); it is created before the worker
// starts so that the backlog is there when it does.
func authStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:       authStream,
		Subjects:   []string{authPrefix + ".>"},
		Retention:  jetstream.LimitsPolicy,
		Storage:    jetstream.FileStorage,
		MaxAge:     168 * time.Hour,
		MaxBytes:   -1,
		Discard:    jetstream.DiscardNew,
		Duplicates: 2 * time.Minute,
	}
}

// consumerConfig is a durable pull consumer like the worker's, for the
// naive worker and the broker ceiling.
func consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       authConsumer,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    -1,
		MaxAckPending: 1000,
		FilterSubject: authPrefix + ".>",
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
	}
}

// resetJetStream deletes every stream (auth events, dead letters, notices,
// KV buckets), so each contender starts on a fresh broker state.
func resetJetStream(ctx context.Context, js jetstream.JetStream) error {
	names := js.StreamNames(ctx)
	var list []string
	for n := range names.Name() {
		list = append(list, n)
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("list streams: %w", err)
	}
	for _, n := range list {
		if err := js.DeleteStream(ctx, n); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("delete stream %s: %w", n, err)
		}
	}
	return nil
}

// publish creates the auth stream and publishes the backlog with bounded
// outstanding asynchronous publishes, then checks the stream holds every
// event. It returns the stream sequence of the last event.
func publish(ctx context.Context, nc *nats.Conn, b *backlog) (uint64, error) {
	var failed atomic.Int64
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { failed.Add(1) }))
	if err != nil {
		return 0, fmt.Errorf("jetstream: %w", err)
	}
	stream, err := js.CreateStream(ctx, authStreamConfig())
	if err != nil {
		return 0, fmt.Errorf("create stream %s: %w", authStream, err)
	}
	subject := events.AuthSubject(authPrefix, events.OperationLogin)
	// Windows of publishWindow outstanding publishes, each waited for, keep
	// the client below its stall limit however slow the server is.
	const publishWindow = 2000
	wait := func() error {
		select {
		case <-js.PublishAsyncComplete():
			return nil
		case <-time.After(time.Minute):
			return errors.New("publish backlog: no acks within a minute")
		case <-ctx.Done():
			return fmt.Errorf("publish backlog: %w", ctx.Err())
		}
	}
	for i, data := range b.events {
		if _, err := js.PublishAsync(subject, data, jetstream.WithMsgID(b.ids[i])); err != nil {
			return 0, fmt.Errorf("publish event %d: %w", i, err)
		}
		if (i+1)%publishWindow == 0 {
			if err := wait(); err != nil {
				return 0, err
			}
		}
	}
	if err := wait(); err != nil {
		return 0, err
	}
	if n := failed.Load(); n > 0 {
		return 0, fmt.Errorf("publish backlog: %d publishes failed", n)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	if info.State.Msgs != uint64(len(b.events)) {
		return 0, fmt.Errorf("stream holds %d events, published %d", info.State.Msgs, len(b.events))
	}
	return info.State.LastSeq, nil
}

// seed creates one document per user, before the contender starts (the
// lastLogin trigger does not upsert).
func seed(ctx context.Context, coll *mongo.Collection, users []string) error {
	const chunk = 1000
	docs := make([]any, 0, chunk)
	for i := 0; i < len(users); i += chunk {
		docs = docs[:0]
		for _, u := range users[i:min(i+chunk, len(users))] {
			docs = append(docs, bson.D{{Key: userIDField, Value: u}})
		}
		if _, err := coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)); err != nil {
			return fmt.Errorf("seed users: %w", err)
		}
	}
	return nil
}

// ensureIndex gives the contenders that are not the worker the index the
// worker creates for itself: without it every update scans the collection.
func ensureIndex(ctx context.Context, coll *mongo.Collection) error {
	_, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{
		Keys: bson.D{{Key: userIDField, Value: 1}},
		Options: options.Index().SetName(userIDField + "_unique").SetUnique(true).
			SetPartialFilterExpression(bson.D{{Key: userIDField, Value: bson.D{{Key: "$exists", Value: true}}}}),
	})
	if err != nil {
		return fmt.Errorf("create index: %w", err)
	}
	return nil
}

// verify checks that MongoDB holds the backlog's final state: every user
// that logged in has lastLogin equal to its newest event time, the others
// have none. A contender that loses or misapplies writes gets no figure.
func verify(ctx context.Context, coll *mongo.Collection, b *backlog) error {
	cur, err := coll.Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{
		{Key: "_id", Value: 0}, {Key: userIDField, Value: 1}, {Key: "lastLogin", Value: 1},
	}))
	if err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	defer cur.Close(ctx)
	var doc struct {
		UserID    string     `bson:"userId"`
		LastLogin *time.Time `bson:"lastLogin"`
	}
	seen, wrong := 0, 0
	var first error
	for cur.Next(ctx) {
		if err := cur.Decode(&doc); err != nil {
			return fmt.Errorf("read back: %w", err)
		}
		seen++
		want, ok := b.final[doc.UserID]
		switch {
		case !ok && doc.LastLogin == nil:
		case ok && doc.LastLogin != nil && doc.LastLogin.Equal(want):
		default:
			wrong++
			if first == nil {
				first = fmt.Errorf("user %s: lastLogin %v, want %v (set: %v)", doc.UserID, doc.LastLogin, want, ok)
			}
		}
		doc.LastLogin = nil
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	if seen != len(b.users) || wrong > 0 {
		return fmt.Errorf("%d documents, want %d; %d wrong; first: %v", seen, len(b.users), wrong, first)
	}
	return nil
}

// finalWrite is one write of the database ceiling.
type finalWrite struct {
	UserID    string `json:"u"`
	LastLogin int64  `json:"t"` // Unix milliseconds
}

// writeFinalWrites stores the backlog's final writes for the database
// ceiling process.
func writeFinalWrites(path string, b *backlog) error {
	ws := make([]finalWrite, 0, len(b.final))
	for _, u := range b.users {
		if t, ok := b.final[u]; ok {
			ws = append(ws, finalWrite{UserID: u, LastLogin: t.UnixMilli()})
		}
	}
	data, err := json.Marshal(ws)
	if err != nil {
		return fmt.Errorf("encode final writes: %w", err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("write final writes: %w", err)
	}
	return nil
}
