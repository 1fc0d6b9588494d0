package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/customdata-worker/customdata-worker/internal/mongostandin"
	"github.com/customdata-worker/customdata-worker/internal/redact"
)

// Contender names.
const (
	cWorker        = "worker"
	cWorkerNotices = "worker, notices on"
	cNaive         = "naive worker"
	cDBCeiling     = "database ceiling"
	cBroker        = "broker ceiling"
)

// bench owns the servers of one run: one nats-server for the whole run
// (streams are deleted between contenders) and MongoDB: MONGODB_URI, or a
// fresh stand-in per workload, because the stand-in's oplog only grows and
// every change-stream poll rescans it (see /work/shared/STANDIN-NOTES.md).
type bench struct {
	cfg     config
	dir     string
	self    string
	nats    *natsServer
	nc      *nats.Conn
	js      jetstream.JetStream
	standin *mongostandin.StandIn
	mongo   *mongo.Client
	uri     string
	dbSeq   int
}

func (b *bench) close() {
	if b.nc != nil {
		b.nc.Close()
	}
	b.closeMongo()
	if b.nats != nil {
		b.nats.stop(10 * time.Second)
	}
}

func (b *bench) closeMongo() {
	if b.mongo != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = b.mongo.Disconnect(ctx)
		cancel()
		b.mongo = nil
	}
	if b.standin != nil {
		_ = b.standin.Close()
		b.standin = nil
	}
}

// freshMongo gives the next workload a MongoDB: a new stand-in, or the
// MONGODB_URI server (each contender still gets its own database).
func (b *bench) freshMongo(ctx context.Context) error {
	if b.cfg.MongoURI != "" && b.mongo != nil {
		return nil
	}
	b.closeMongo()
	b.uri = b.cfg.MongoURI
	if b.uri == "" {
		s, err := mongostandin.Start(ctx)
		if err != nil {
			return fmt.Errorf("start the MongoDB stand-in (make standin): %w", err)
		}
		b.standin, b.uri = s, s.URI()
	}
	c, err := mongo.Connect(options.Client().ApplyURI(b.uri).SetServerSelectionTimeout(20 * time.Second))
	if err != nil {
		return fmt.Errorf("connect %s: %w", redact.URI(b.uri), err)
	}
	b.mongo = c
	if err := c.Ping(ctx, nil); err != nil {
		return fmt.Errorf("ping %s: %w", redact.URI(b.uri), err)
	}
	if b.standin != nil {
		return b.warmStandin(ctx)
	}
	return nil
}

// pids names the processes whose CPU is reported beside a contender's.
func (b *bench) pids(contender int) map[string]int {
	m := map[string]int{"contender": contender, "nats": b.nats.pid()}
	if b.standin != nil {
		m["standin"] = b.standin.Pid()
	}
	return m
}

// collection returns a fresh database's custom-data collection. Writes use
// majority write concern, like the worker's default.
func (b *bench) collection(workload, contender string) (*mongo.Collection, string) {
	b.dbSeq++
	name := fmt.Sprintf("bench_%s_%s_%d", workload, strings.NewReplacer(" ", "_", ",", "").Replace(contender), b.dbSeq)
	return b.mongo.Database(name).Collection(collectionName, options.Collection().SetWriteConcern(writeconcern.Majority())), name
}

// workerEnv configures the worker binary as a user would: through its
// environment. Settings the caller has exported (CUSTOMDATA_BATCH_SIZE, …)
// pass through unless the harness must own them.
func (b *bench) workerEnv(db string, notices bool) []string {
	return append(os.Environ(),
		"CUSTOMDATA_NATS_URL="+b.nats.url,
		"CUSTOMDATA_NATS_EMBEDDED=false",
		"CUSTOMDATA_MONGODB_URI="+b.uri,
		"CUSTOMDATA_MONGODB_DATABASE="+db,
		"CUSTOMDATA_MONGODB_COLLECTION="+collectionName,
		"CUSTOMDATA_USER_ID_FIELD="+userIDField,
		"CUSTOMDATA_AUTH_STREAM="+authStream,
		"CUSTOMDATA_AUTH_SUBJECT_PREFIX="+authPrefix,
		"CUSTOMDATA_AUTH_CONSUMER="+authConsumer,
		"CUSTOMDATA_DLQ_STREAM="+deadLetterStream,
		"CUSTOMDATA_PROVISION=create",
		fmt.Sprintf("CUSTOMDATA_NOTICES_ENABLED=%t", notices),
		"CUSTOMDATA_NOTICE_STREAM="+noticeStream,
		"CUSTOMDATA_NOTICE_SUBJECT_PREFIX="+noticePrefix,
		"CUSTOMDATA_HTTP_ADDR=", // no ops listener: nothing reads it here
		"CUSTOMDATA_LOG_FORMAT=json",
	)
}

// childEnv configures the harness's own contender processes.
func (b *bench) childArgs(kind, db string, extra ...string) []string {
	return append([]string{kind, "-nats", b.nats.url, "-mongo", b.uri, "-db", db, "-coll", collectionName}, extra...)
}

// runQueued runs one contender that consumes the backlog from JetStream:
// the worker binary, the naive worker or the broker ceiling. The backlog is
// published first; the drain starts at the first delivery and ends when the
// consumer's ack floor reaches the last event.
func (b *bench) runQueued(ctx context.Context, wl string, bl *backlog, name string) (contenderResult, error) {
	res := contenderResult{Name: name, Events: len(bl.events)}
	if err := resetJetStream(ctx, b.js); err != nil {
		return res, err
	}
	lastSeq, err := publish(ctx, b.nc, bl)
	if err != nil {
		return res, err
	}
	coll, db := b.collection(wl, name)
	defer func() { _ = coll.Database().Drop(context.WithoutCancel(ctx)) }()
	if name != cBroker {
		if err := seed(ctx, coll, bl.users); err != nil {
			return res, err
		}
	}

	var p *proc
	notices := name == cWorkerNotices
	switch name {
	case cWorker, cWorkerNotices:
		p, _, err = startProc(logName(wl, name), b.cfg.WorkerBin, nil, b.workerEnv(db, notices), b.dir, false)
	case cNaive, cBroker:
		if name == cNaive {
			if err := ensureIndex(ctx, coll); err != nil {
				return res, err
			}
		}
		if _, err := b.js.CreateOrUpdateConsumer(ctx, authStream, consumerConfig()); err != nil {
			return res, fmt.Errorf("create consumer: %w", err)
		}
		kind := "naive"
		if name == cBroker {
			kind = "broker"
		}
		p, _, err = startProc(logName(wl, name), b.self, b.childArgs(kind, db), os.Environ(), b.dir, false)
	default:
		return res, fmt.Errorf("unknown contender %q", name)
	}
	if err != nil {
		return res, err
	}
	started := time.Now()
	stopped := false
	defer func() {
		if !stopped {
			p.stop(15 * time.Second)
		}
	}()

	meter := newCPUMeter(b.pids(p.pid()))
	var t0 time.Time
	deadline := started.Add(b.cfg.DrainTimeout)
	for {
		if p.exited() {
			return res, fmt.Errorf("%s: %w before the drain ended:\n%s", name, errExited, p.logTail())
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("%s: backlog not drained within %s (BENCH_DRAIN_TIMEOUT):\n%s", name, b.cfg.DrainTimeout, p.logTail())
		}
		info, err := consumerInfo(ctx, b.js)
		if err != nil {
			return res, err
		}
		if info != nil && t0.IsZero() && info.Delivered.Stream > 0 {
			t0 = time.Now()
			meter.mark()
		}
		if info != nil && info.AckFloor.Stream >= lastSeq {
			break
		}
		// Each poll is a consumer-info request that costs nats-server CPU
		// (reported beside the contender's): poll every 20 ms, an error
		// of at most 20 ms on each end of a drain of seconds.
		time.Sleep(drainPoll)
	}
	end := time.Now()
	cpu := meter.since()
	b.fill(&res, end.Sub(t0), end.Sub(started), cpu, p.pid())

	if notices {
		at, total, settled, err := b.settleNotices(ctx, end)
		if err != nil {
			return res, err
		}
		res.NoticesAtDrain, res.NoticesTotal, res.NoticesSettledS = &at, &total, ptr(settled.Seconds())
	}
	res.ExitCode = p.stop(15 * time.Second)
	stopped = true
	if res.ExitCode != 0 {
		return res, fmt.Errorf("%s exited with %d after a stop request:\n%s", name, res.ExitCode, p.logTail())
	}
	if name == cBroker {
		res.Verified = true // nothing to verify in MongoDB; the ack floor is the proof
	} else if err := verify(ctx, coll, bl); err != nil {
		res.VerifyError = err.Error()
	} else {
		res.Verified = true
	}
	// The ack floor also passes terminated (dead-lettered) events, and the
	// final state alone does not show dropped older events: count the
	// deliveries and, for the worker, its dead letters.
	info, err := consumerInfo(ctx, b.js)
	if err != nil {
		return res, err
	}
	if info == nil {
		return res, fmt.Errorf("%s: the consumer is gone after the drain", name)
	}
	var deadLetters *uint64
	if name == cWorker || name == cWorkerNotices {
		n, err := streamMsgs(ctx, b.js, deadLetterStream)
		if err != nil {
			return res, err
		}
		deadLetters = &n
	}
	checkDelivery(&res, info.Delivered.Consumer, lastSeq, deadLetters)
	return res, nil
}

// drainPoll is how often runQueued asks for the consumer's state.
const drainPoll = 20 * time.Millisecond

// checkDelivery records the redeliveries of a drain (deliveries beyond
// one per event: the stream is fresh, so its events are 1..lastSeq) and
// the dead letters, if counted; any dead letter fails verification.
func checkDelivery(res *contenderResult, deliveries, lastSeq uint64, deadLetters *uint64) {
	res.Redelivered = ptr(deliveries - min(deliveries, lastSeq))
	res.DeadLetters = deadLetters
	if deadLetters == nil || *deadLetters == 0 {
		return
	}
	msg := fmt.Sprintf("%d events dead-lettered", *deadLetters)
	if res.VerifyError != "" {
		msg += "; " + res.VerifyError
	}
	res.Verified, res.VerifyError = false, msg
}

// streamMsgs returns how many messages a stream holds, 0 if it does not
// exist.
func streamMsgs(ctx context.Context, js jetstream.JetStream, name string) (uint64, error) {
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", name, err)
	}
	return s.CachedInfo().State.Msgs, nil
}

// fill sets the rates and per-event costs of res.
func (b *bench) fill(res *contenderResult, drain, wall time.Duration, cpu map[string]time.Duration, pid int) {
	n := float64(res.Events)
	res.DrainS, res.WallS = drain.Seconds(), wall.Seconds()
	if drain > 0 {
		res.EventsPerS = n / drain.Seconds()
	}
	perEvent := func(d time.Duration) float64 { return float64(d.Microseconds()) / n }
	res.CPUUsPerEvent = perEvent(cpu["contender"])
	if d, ok := cpu["standin"]; ok {
		res.StandinCPUUsPerEvent = ptr(perEvent(d))
	}
	if d, ok := cpu["nats"]; ok {
		res.NATSCPUUsPerEvent = ptr(perEvent(d))
	}
	res.OtherLoadPct = otherLoadPct(cpu, drain)
	res.Runs = 1
	if rss, err := peakRSS(pid); err == nil {
		res.PeakRSSMiB = float64(rss) / (1 << 20)
	}
}

// consumerInfo returns the auth consumer's state, or nil before a
// contender has created it.
func consumerInfo(ctx context.Context, js jetstream.JetStream) (*jetstream.ConsumerInfo, error) {
	cons, err := js.Consumer(ctx, authStream, authConsumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("consumer info: %w", err)
	}
	return cons.CachedInfo(), nil
}

// settleNotices waits, after a drain with notices on, until the notice
// stream has stopped growing for two seconds (or BENCH_NOTICE_WAIT), and
// returns its size at the drain's end, its final size and when it
// settled, counted from the drain's end.
func (b *bench) settleNotices(ctx context.Context, drainEnd time.Time) (atDrain, total uint64, settled time.Duration, err error) {
	count := func() (uint64, error) {
		s, err := b.js.Stream(ctx, noticeStream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("notice stream: %w", err)
		}
		return s.CachedInfo().State.Msgs, nil
	}
	if atDrain, err = count(); err != nil {
		return 0, 0, 0, err
	}
	total, lastGrowth := atDrain, drainEnd
	for deadline := time.Now().Add(b.cfg.NoticeWait); time.Now().Before(deadline) && time.Since(lastGrowth) < 2*time.Second; {
		time.Sleep(20 * time.Millisecond)
		n, err := count()
		if err != nil {
			return 0, 0, 0, err
		}
		if n != total {
			total, lastGrowth = n, time.Now()
		}
	}
	return atDrain, total, lastGrowth.Sub(drainEnd), nil
}

// runDBCeiling applies the backlog's final writes as unordered BulkWrites
// of 1,000 from a separate process, no NATS involved.
func (b *bench) runDBCeiling(ctx context.Context, wl string, bl *backlog) (contenderResult, error) {
	res := contenderResult{Name: cDBCeiling, Events: len(bl.events)}
	coll, db := b.collection(wl, cDBCeiling)
	defer func() { _ = coll.Database().Drop(context.WithoutCancel(ctx)) }()
	if err := seed(ctx, coll, bl.users); err != nil {
		return res, err
	}
	if err := ensureIndex(ctx, coll); err != nil {
		return res, err
	}
	writes := filepath.Join(b.dir, "final-writes-"+wl+".json")
	if err := writeFinalWrites(writes, bl); err != nil {
		return res, err
	}
	defer os.Remove(writes)
	p, stdout, err := startProc(logName(wl, cDBCeiling), b.self, b.childArgs("dbceiling", db, "-writes", writes), os.Environ(), b.dir, true)
	if err != nil {
		return res, err
	}
	defer p.stop(15 * time.Second)
	lines := make(chan string, 4)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	started := time.Now()
	if err := expectLine(lines, "ready", time.Minute, p); err != nil {
		return res, err
	}
	meter := newCPUMeter(b.pids(p.pid()))
	meter.mark()
	t0 := time.Now()
	if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
		return res, fmt.Errorf("start database ceiling: %w", err)
	}
	if err := expectLine(lines, "done", b.cfg.DrainTimeout, p); err != nil {
		return res, err
	}
	end := time.Now()
	b.fill(&res, end.Sub(t0), end.Sub(started), meter.since(), p.pid())
	if res.ExitCode = p.stop(15 * time.Second); res.ExitCode != 0 {
		return res, fmt.Errorf("database ceiling exited with %d:\n%s", res.ExitCode, p.logTail())
	}
	if err := verify(ctx, coll, bl); err != nil {
		res.VerifyError = err.Error()
	} else {
		res.Verified = true
	}
	return res, nil
}

func expectLine(lines <-chan string, want string, timeout time.Duration, p *proc) error {
	select {
	case line, ok := <-lines:
		if !ok {
			return fmt.Errorf("%s: %w, want %q:\n%s", p.name, errExited, want, p.logTail())
		}
		if line != want {
			return fmt.Errorf("%s said %q, want %q", p.name, line, want)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s did not say %q within %s:\n%s", p.name, want, timeout, p.logTail())
	}
}

func logName(wl, contender string) string {
	return wl + "-" + strings.NewReplacer(" ", "-", ",", "").Replace(contender)
}
