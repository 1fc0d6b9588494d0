package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/customdata-worker/customdata-worker/events"
)

// childFlags are the settings the harness passes to its own contender
// processes (naive worker, broker ceiling, database ceiling).
type childFlags struct {
	nats, mongo, db, coll, writes string
}

func parseChildFlags(kind string, args []string) (childFlags, error) {
	var f childFlags
	fs := flag.NewFlagSet(kind, flag.ContinueOnError)
	fs.StringVar(&f.nats, "nats", "", "NATS URL")
	fs.StringVar(&f.mongo, "mongo", "", "MongoDB URI")
	fs.StringVar(&f.db, "db", "", "database")
	fs.StringVar(&f.coll, "coll", collectionName, "collection")
	fs.StringVar(&f.writes, "writes", "", "final writes (database ceiling)")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	return f, nil
}

func (f childFlags) collection() (*mongo.Client, *mongo.Collection, error) {
	c, err := mongo.Connect(options.Client().ApplyURI(f.mongo).SetServerSelectionTimeout(20 * time.Second))
	if err != nil {
		return nil, nil, fmt.Errorf("connect MongoDB: %w", err)
	}
	coll := c.Database(f.db).Collection(f.coll, options.Collection().SetWriteConcern(writeconcern.Majority()))
	return c, coll, nil
}

func (f childFlags) consumer(ctx context.Context) (*nats.Conn, jetstream.Consumer, error) {
	nc, err := nats.Connect(f.nats, nats.Name("loadbench"))
	if err != nil {
		return nil, nil, fmt.Errorf("connect NATS: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	cons, err := js.Consumer(ctx, authStream, authConsumer)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("consumer %s: %w", authConsumer, err)
	}
	return nc, cons, nil
}

// runNaive is the naive worker: for each message, decode it with the
// worker's own strict decoder, one UpdateOne($max lastLogin), then ack it.
// It runs until ctx is cancelled (SIGTERM), like the worker.
func runNaive(ctx context.Context, f childFlags) error {
	client, coll, err := f.collection()
	if err != nil {
		return err
	}
	defer client.Disconnect(context.WithoutCancel(ctx))
	nc, cons, err := f.consumer(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	for ctx.Err() == nil {
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return fmt.Errorf("fetch: %w", err)
		}
		for msg := range batch.Messages() {
			ev, err := events.Decode(msg.Data())
			if err != nil {
				_ = msg.Term()
				continue
			}
			_, err = coll.UpdateOne(ctx, bson.D{{Key: userIDField, Value: ev.User.ID}},
				bson.D{{Key: "$max", Value: bson.D{{Key: "lastLogin", Value: ev.Time}}}})
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				_ = msg.Nak()
				continue
			}
			if err := msg.Ack(); err != nil {
				return fmt.Errorf("ack: %w", err)
			}
		}
	}
	return nil
}

// runBroker is the broker ceiling: fetch and ack, nothing else.
func runBroker(ctx context.Context, f childFlags) error {
	nc, cons, err := f.consumer(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	for ctx.Err() == nil {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return fmt.Errorf("fetch: %w", err)
		}
		for msg := range batch.Messages() {
			if err := msg.Ack(); err != nil {
				return fmt.Errorf("ack: %w", err)
			}
		}
	}
	return nil
}

// runDBCeiling is the database ceiling: it connects, loads the final
// writes and says "ready"; on "go" from stdin it applies them as unordered
// BulkWrites of 1,000, one at a time, says "done", then waits for stdin to
// close so that the harness can read its CPU time before it exits.
func runDBCeiling(ctx context.Context, f childFlags, in io.Reader, out io.Writer) error {
	data, err := os.ReadFile(f.writes)
	if err != nil {
		return fmt.Errorf("read final writes: %w", err)
	}
	var ws []finalWrite
	if err := json.Unmarshal(data, &ws); err != nil {
		return fmt.Errorf("decode final writes: %w", err)
	}
	client, coll, err := f.collection()
	if err != nil {
		return err
	}
	defer client.Disconnect(context.WithoutCancel(ctx))
	if err := client.Ping(ctx, nil); err != nil {
		return fmt.Errorf("ping MongoDB: %w", err)
	}
	sc := bufio.NewScanner(in)
	fmt.Fprintln(out, "ready")
	if !sc.Scan() || sc.Text() != "go" {
		return errors.New("no go signal on stdin")
	}
	const batch = 1000
	models := make([]mongo.WriteModel, 0, batch)
	for i := 0; i < len(ws); i += batch {
		models = models[:0]
		for _, w := range ws[i:min(i+batch, len(ws))] {
			models = append(models, mongo.NewUpdateOneModel().
				SetFilter(bson.D{{Key: userIDField, Value: w.UserID}}).
				SetUpdate(bson.D{{Key: "$max", Value: bson.D{{Key: "lastLogin", Value: time.UnixMilli(w.LastLogin).UTC()}}}}))
		}
		if _, err := coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false)); err != nil {
			return fmt.Errorf("bulk write: %w", err)
		}
	}
	fmt.Fprintln(out, "done")
	for sc.Scan() { // until the harness closes stdin
	}
	return nil
}
