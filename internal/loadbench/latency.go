package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/events"
)

// latencyWriters is how many inserts may be in flight at once: enough to
// hold the target rate over a loaded loopback, few enough not to become
// the load themselves.
const latencyWriters = 4

// noticeLog records when the notice for each change arrived.
type noticeLog struct {
	mu      sync.Mutex
	arrived map[string]time.Time
	flushes int
	signal  chan struct{}
}

func (l *noticeLog) handle(msg jetstream.Msg) {
	at := time.Now()
	n, err := events.DecodeNotice(msg.Data())
	if err != nil {
		return
	}
	l.mu.Lock()
	switch n.Kind {
	case events.NoticeFlushAll:
		l.flushes++
	case events.NoticeUser:
		if _, dup := l.arrived[n.UserID]; !dup {
			l.arrived[n.UserID] = at
		}
	}
	l.mu.Unlock()
	select {
	case l.signal <- struct{}{}:
	default:
	}
}

func (l *noticeLog) count(ids []string) (got int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		if _, ok := l.arrived[id]; ok {
			got++
		}
	}
	return got
}

// runLatency runs the worker with notices on and nothing in the auth
// stream, inserts new user documents at a paced rate straight into
// MongoDB (as an app would), and measures, per change, the time from
// MongoDB acknowledging the insert to the notice reaching an ordered
// consumer on the notice stream (as an issuer would read it). It starts at
// the target rate and halves it until a step is sustained: zero missing
// and p99 within the target.
func (b *bench) runLatency(ctx context.Context) (*latencyResult, error) {
	res := &latencyResult{TargetP99Ms: ms(b.cfg.NoticeP99)}
	if err := resetJetStream(ctx, b.js); err != nil {
		return res, err
	}
	coll, db := b.collection(wlLatency, cWorkerNotices)
	defer func() { _ = coll.Database().Drop(context.WithoutCancel(ctx)) }()
	p, _, err := startProc(logName(wlLatency, cWorkerNotices), b.cfg.WorkerBin, nil, b.workerEnv(db, true), b.dir, false)
	if err != nil {
		return res, err
	}
	defer p.stop(15 * time.Second)

	log := &noticeLog{arrived: map[string]time.Time{}, signal: make(chan struct{}, 1)}
	// The worker creates the notice stream; wait for it, then read it from
	// the start so the first flush-all (the change stream is open) is seen.
	var stream jetstream.Stream
	for deadline := time.Now().Add(time.Minute); ; {
		if p.exited() {
			return res, fmt.Errorf("worker: %w:\n%s", errExited, p.logTail())
		}
		stream, err = b.js.Stream(ctx, noticeStream)
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return res, fmt.Errorf("notice stream: %w", err)
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("worker created no notice stream within a minute:\n%s", p.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	oc, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{noticePrefix + ".>"},
	})
	if err != nil {
		return res, fmt.Errorf("ordered consumer: %w", err)
	}
	cc, err := oc.Consume(log.handle)
	if err != nil {
		return res, fmt.Errorf("consume notices: %w", err)
	}
	defer cc.Stop()
	if err := waitNotices(log, time.Minute, func() bool { return log.flushes > 0 }); err != nil {
		return res, fmt.Errorf("worker's notifier did not start (no flush-all): %w:\n%s", err, p.logTail())
	}
	meter := newCPUMeter(map[string]int{"worker": p.pid()})
	if b.standin != nil {
		meter.pids["standin"] = b.standin.Pid()
	}
	// One second at the target rate first, not measured: connection
	// setup and the JIT warm-up of a fresh stand-in stay out of the figures.
	warm, err := b.latencyStep(ctx, coll, log, meter, float64(b.cfg.NoticeRate), b.cfg.NoticeRate, "warmup")
	if err != nil {
		return res, fmt.Errorf("warm-up: %w", err)
	}
	if warm.Missing > 0 {
		return res, fmt.Errorf("warm-up: %d of %d notices missing after %s:\n%s", warm.Missing, warm.Changes, b.cfg.NoticeWait, p.logTail())
	}
	for rate := float64(b.cfg.NoticeRate); rate >= 1; rate /= 2 {
		n := max(1, int(rate*b.cfg.NoticeSeconds))
		step, err := b.latencyStep(ctx, coll, log, meter, rate, n, fmt.Sprintf("step%d", len(res.Steps)))
		if err != nil {
			return res, err
		}
		res.Steps = append(res.Steps, step)
		if step.Sustained || p.exited() {
			break
		}
		if len(res.Steps) >= 4 {
			break // bounded: target, 1/2, 1/4, 1/8
		}
		time.Sleep(time.Second) // let a backlog of the last step clear
	}
	if p.exited() {
		return res, fmt.Errorf("worker: %w during the latency scenario:\n%s", errExited, p.logTail())
	}
	return res, nil
}

// latencyStep inserts n changes at rate, from a pacer and a few writers,
// and waits for their notices. Latency is from the insert's
// acknowledgement to the notice's arrival; CPU is measured from the first
// change to the last notice (or the wait's end). name keeps the user ids
// of steps apart.
func (b *bench) latencyStep(ctx context.Context, coll *mongo.Collection, log *noticeLog, meter *cpuMeter, rate float64, n int, name string) (latencyStep, error) {
	step := latencyStep{TargetRate: rate, Changes: n}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("lat-%s-%07d", name, i)
	}
	acked := make([]time.Time, n)
	work := make(chan int, latencyWriters)
	errc := make(chan error, latencyWriters)
	var wg sync.WaitGroup
	for range latencyWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if _, err := coll.InsertOne(ctx, bson.D{{Key: userIDField, Value: ids[i]}, {Key: "plan", Value: "free"}}); err != nil {
					select {
					case errc <- fmt.Errorf("insert: %w", err):
					default:
					}
					continue
				}
				acked[i] = time.Now()
			}
		}()
	}
	meter.mark()
	start := time.Now()
	period := time.Duration(float64(time.Second) / rate)
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * period)); d > 0 {
			time.Sleep(d)
		}
		work <- i
	}
	close(work)
	wg.Wait()
	writeEnd := time.Now()
	select {
	case err := <-errc:
		return step, err
	default:
	}
	step.AchievedRate = float64(n) / writeEnd.Sub(start).Seconds()
	_ = waitNotices(log, b.cfg.NoticeWait, func() bool {
		for _, id := range ids {
			if _, ok := log.arrived[id]; !ok {
				return false
			}
		}
		return true
	})
	cpu := meter.since()
	step.OtherLoadPct = otherLoadPct(cpu, time.Since(start))

	lat := make([]time.Duration, 0, n)
	log.mu.Lock()
	for i, id := range ids {
		at, ok := log.arrived[id]
		if !ok {
			step.Missing++
			continue
		}
		lat = append(lat, max(0, at.Sub(acked[i])))
	}
	log.mu.Unlock()
	slices.Sort(lat)
	step.P50Ms, step.P90Ms, step.P99Ms = ms(percentile(lat, .50)), ms(percentile(lat, .90)), ms(percentile(lat, .99))
	if len(lat) > 0 {
		step.MaxMs = ms(lat[len(lat)-1])
	}
	step.NotifierCPUUsPerChange = float64(cpu["worker"].Microseconds()) / float64(n)
	if d, ok := cpu["standin"]; ok {
		step.StandinCPUUsPerChange = ptr(float64(d.Microseconds()) / float64(n))
	}
	step.Sustained = step.Missing == 0 && step.P99Ms <= ms(b.cfg.NoticeP99)
	return step, nil
}

func waitNotices(log *noticeLog, timeout time.Duration, cond func() bool) error {
	deadline := time.After(timeout)
	for {
		log.mu.Lock()
		ok := cond()
		log.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-log.signal:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			return fmt.Errorf("not within %s", timeout)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// percentile returns the p-quantile (0..1) of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(len(sorted)-1, i))]
}
