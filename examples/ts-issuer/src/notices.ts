// Follows the worker's notice stream and keeps a Cache fresh: package
// issuer's Cache.Run, with the same gap → flush rule.
//
// Why the stream and not a subscription: a plain subscription to
// <prefix>.> cannot tell it missed a notice (a slow-consumer drop or a
// disconnect loses messages silently). Read through an ordered consumer,
// every notice carries its stream sequence, so a skipped one (aged out
// after NOTICE_MAX_AGE, purged) is seen and flushes the cache. Whenever it
// cannot know that notices flow — the connection drops or comes back, the
// consumer misses heartbeats, is deleted or resets itself, the stream is
// deleted or recreated (its creation time changed, or its last sequence
// went below one already delivered), no heartbeat of the worker's notifier
// (of every partition of its change stream, see LeaderBeats) for
// leaderTimeoutMs — it flushes and keeps nothing, then starts a new
// consumer from the stream's end as it is then, flushing again. It never
// relies on a consumer resuming by itself: a recreated stream starts again
// at sequence 1, which a resumed consumer would wait for in vain.

import {
  type Consumer,
  type ConsumerMessages,
  DeliverPolicy,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  type JsMsg,
  type StreamInfo,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";

import type { Cache, FlushReason } from "./cache.js";
import { LeaderBeats } from "./beats.js";
import { DEFAULT_NOTICE_PREFIX, DEFAULT_NOTICE_STREAM, decodeNotice, heartbeatSubject, partitionOf, partitionsOf } from "./contract.js";

export type NoticeConfig = {
  /** The worker's NOTICE_SUBJECT_PREFIX (default "customdata.invalidated"). */
  prefix?: string;
  /** The worker's NOTICE_STREAM (default "CUSTOMDATA_NOTICES"). */
  stream?: string;
  /**
   * With no heartbeat of the worker's leading notifier for this long (of
   * some partition, when the worker runs NOTIFIER_PARTITIONS above 1: each
   * partition's leader beats for it), keep nothing until every partition is
   * heard again (default 30000: six of its 5 s beats); negative: never.
   */
  leaderTimeoutMs?: number;
  /** How often the followed stream's identity is checked (default 30000). */
  checkEveryMs?: number;
  /** Longest pause between attempts to follow (default 5000). */
  retryWaitMs?: number;
  log?: (msg: string) => void;
};

/** run() rejects with it when the NATS connection is closed for good. */
export class NoticesLostError extends Error {}

type Ended = { why: string; flush: FlushReason; closed?: boolean };

// Consumer notifications after which delivery cannot be trusted.
const lost = new Set([
  "heartbeats_missed",
  "consumer_deleted",
  "consumer_not_found",
  "stream_not_found",
  "reset",
  "ordered_consumer_recreated",
  "no_responders",
]);

export class NoticeFollower {
  private readonly nc: NatsConnection;
  private readonly cache: Cache;
  private readonly prefix: string;
  private readonly stream: string;
  private readonly leaderTimeout: number;
  private readonly checkEvery: number;
  private readonly retryWait: number;
  private readonly log: (msg: string) => void;

  private gen = 0; // consumer generation: a late delivery of an older consumer is not sequenced
  private next = 0; // stream sequence expected next
  private created = ""; // creation time of the stream last followed ("" none yet)
  private readonly beats = new LeaderBeats();
  private onBeat: (() => void) | undefined;
  private onStatus: ((type: string) => void) | undefined;
  private running = false;

  constructor(nc: NatsConnection, cache: Cache, cfg: NoticeConfig = {}) {
    this.nc = nc;
    this.cache = cache;
    this.prefix = cfg.prefix ?? DEFAULT_NOTICE_PREFIX;
    this.stream = cfg.stream ?? DEFAULT_NOTICE_STREAM;
    this.leaderTimeout = cfg.leaderTimeoutMs || 30_000;
    this.checkEvery = cfg.checkEveryMs || 30_000;
    this.retryWait = cfg.retryWaitMs || 5_000;
    this.log = cfg.log ?? (() => {});
  }

  /**
   * Follows the stream until signal aborts (then resolves). Rejects with
   * NoticesLostError when the connection is closed for good. While it
   * cannot follow (stream missing, NATS down) it retries, and the cache
   * reads through.
   */
  async run(signal: AbortSignal): Promise<void> {
    if (this.running) throw new Error("NoticeFollower.run is already running");
    this.running = true;
    // One status listener for the whole run; each phase installs its handler.
    const status = this.nc.status();
    const pump = (async () => {
      for await (const s of status) this.onStatus?.(s.type);
    })();
    // In case the status listener ends before telling of the close.
    void this.nc.closed().then(() => this.onStatus?.("close"));
    try {
      let wait = 100;
      let reason: FlushReason = "following";
      let down = false;
      for (;;) {
        const [ended, followed] = await this.follow(signal, reason);
        if (signal.aborted) return;
        if (ended.closed || this.nc.isClosed()) {
          throw new NoticesLostError(`notice feed lost for good: ${ended.why}`);
        }
        if (followed) {
          wait = 100;
          down = false;
        }
        if (!down) {
          this.log(`not following notices (${ended.why}): reading MongoDB on every get`);
          down = true;
        }
        reason = ended.flush === "disconnected" ? "reconnected" : ended.flush === "stream_reset" ? "stream_reset" : "following";
        // Wait, or less if the connection comes back.
        const back = await new Promise<boolean>((resolve) => {
          const done = (v: boolean) => {
            clearTimeout(t);
            signal.removeEventListener("abort", stop);
            this.onStatus = undefined;
            resolve(v);
          };
          const t = setTimeout(() => done(false), wait);
          const stop = () => done(false);
          signal.addEventListener("abort", stop, { once: true });
          this.onStatus = (type) => {
            if (type === "reconnect" || type === "close") done(type === "reconnect");
          };
        });
        if (signal.aborted) return;
        if (back) reason = "reconnected";
        wait = Math.min(2 * wait, this.retryWait);
      }
    } finally {
      this.onStatus = undefined;
      (status as unknown as { stop?: () => void }).stop?.();
      await pump.catch(() => {});
      this.running = false;
    }
  }

  // One ordered consumer from the stream's end as it is now, until it
  // fails, the connection drops, the stream turns out to be another, or
  // signal aborts. Reports how it ended and whether it got to follow.
  private async follow(signal: AbortSignal, reason: FlushReason): Promise<[Ended, boolean]> {
    // Status changes from here on interrupt; earlier ones are covered by
    // the flush when following starts.
    let interrupted: Ended | undefined;
    let end: ((e: Ended) => void) | undefined;
    const finish = (e: Ended) => {
      interrupted ??= e;
      end?.(e);
    };
    this.onStatus = (type) => {
      if (type === "close") finish({ why: "connection closed", flush: "stopped", closed: true });
      else if (type === "disconnect" || type === "reconnect" || type === "reconnecting")
        finish({ why: `connection ${type}`, flush: "disconnected" });
    };
    let consumer: Consumer | undefined;
    let msgs: ConsumerMessages | undefined;
    const timers: ReturnType<typeof setInterval>[] = [];
    let followed = false;
    try {
      let jsm: JetStreamManager;
      let info: StreamInfo;
      try {
        jsm = await jetstreamManager(this.nc, { checkAPI: false });
        info = await jsm.streams.info(this.stream);
      } catch (err) {
        return [interrupted ?? { why: `notice stream ${this.stream}: ${(err as Error).message}`, flush: "stopped" }, false];
      }
      const start = info.state.last_seq + 1;
      const reset = this.resetBy(info);
      if (reset !== "") {
        reason = "stream_reset";
        this.log(`notice stream was recreated (${reset}): following it from its new end`);
      }
      const gen = ++this.gen;
      this.next = start;
      this.created = info.created;
      try {
        consumer = await jetstream(this.nc).consumers.get(this.stream, {
          filter_subjects: [`${this.prefix}.>`],
          deliver_policy: DeliverPolicy.StartSequence,
          opt_start_seq: start,
        });
        // Missed heartbeats are noticed within seconds, not the default 30 s expiry.
        msgs = await consumer.consume({ expires: 10_000, idle_heartbeat: 2_000, callback: (m) => this.onMessage(gen, m) });
      } catch (err) {
        return [interrupted ?? { why: `notice consumer: ${(err as Error).message}`, flush: "stopped" }, false];
      }
      if (interrupted) return [interrupted, false];

      this.cache.setKeep(true, reason);
      followed = true;
      this.log(`following notices on ${this.stream} from sequence ${start}`);
      const ended = new Promise<Ended>((resolve) => {
        end = resolve;
      });
      const m = msgs;
      void (async () => {
        for await (const n of m.status()) {
          if (lost.has(n.type)) finish({ why: `consumer: ${n.type}`, flush: "consumer_lost" });
        }
      })().catch(() => {});
      void m.closed().then(
        () => finish({ why: "consumer stopped", flush: "consumer_lost" }),
        (err) => finish({ why: `consumer stopped: ${(err as Error).message}`, flush: "consumer_lost" }),
      );
      const abort = () => finish({ why: "stopped", flush: "stopped" });
      signal.addEventListener("abort", abort, { once: true });
      if (signal.aborted) abort();

      timers.push(
        setInterval(() => {
          jsm.streams.info(this.stream).then(
            (now) => {
              const why = this.resetBy(now);
              if (why !== "") finish({ why: `stream reset: ${why}`, flush: "stream_reset" });
            },
            (err) => {
              // Other errors: the consumer's heartbeats watch the connection.
              if ((err as { name?: string }).name === "StreamNotFoundError") {
                finish({ why: "stream reset: stream not found", flush: "stream_reset" });
              }
            },
          );
        }, this.checkEvery),
      );
      // The start of following counts as a heartbeat: a leader's first
      // one is at most its interval away.
      let leaderless = false;
      this.beats.start(Date.now());
      this.onBeat = () => {
        // Caching again only once every partition is heard.
        if (leaderless && this.beats.silence(Date.now(), this.leaderTimeout).silentMs === 0) {
          leaderless = false;
          this.cache.setKeep(true, "following");
          this.log("the worker's notifier beats again: caching");
        }
      };
      if (this.leaderTimeout > 0) {
        timers.push(
          setInterval(() => {
            const { silentMs, of, missing } = this.beats.silence(Date.now(), this.leaderTimeout);
            if (!leaderless && silentMs > 0) {
              leaderless = true;
              this.cache.setKeep(false, "no_leader");
              const which = of > 1 ? ` (partitions ${missing.join(", ")} of ${of})` : "";
              this.log(`no heartbeat of the worker's notifier${which} for ${silentMs} ms: reading MongoDB on every get`);
            }
          }, Math.max(this.leaderTimeout / 4, 10)),
        );
      }
      const e = interrupted ?? (await ended);
      signal.removeEventListener("abort", abort);
      return [e, true];
    } finally {
      end = undefined;
      this.onStatus = undefined;
      this.onBeat = undefined;
      for (const t of timers) clearInterval(t);
      // Whatever ends this follow, nothing kept so far is trusted.
      if (followed) this.cache.setKeep(false, interrupted?.flush ?? "stopped");
      await msgs?.close().catch(() => {});
      // Ephemeral anyway (gone after 5 min inactive); tidy up at once when possible.
      void consumer?.delete().catch(() => {});
    }
  }

  // Why info shows another stream than the one last followed ("" if not).
  private resetBy(info: StreamInfo): string {
    if (this.created === "") return "";
    if (info.created !== this.created) return "creation time changed";
    if (info.state.last_seq + 1 < this.next) return "last sequence went backwards";
    return "";
  }

  private onMessage(gen: number, m: JsMsg): void {
    let seq: number | undefined;
    try {
      seq = m.info.streamSequence;
    } catch {
      seq = undefined;
    }
    // A notice that cannot be placed in the sequence may hide a gap.
    if (seq === undefined) {
      this.cache.flush("sequence_gap");
    } else if (gen === this.gen) {
      const expected = this.next;
      if (seq >= this.next) this.next = seq + 1;
      if (seq > expected) {
        this.cache.flush("sequence_gap");
        this.log(`notice stream sequence gap (expected ${expected}, got ${seq}): cache flushed`);
      }
    }
    if (m.subject === heartbeatSubject(this.prefix)) {
      // One that names no partition speaks for partition 0 of 1, as
      // heartbeats did before partitions; one that cannot be read is
      // ignored (it vouches for no leader), as package issuer does.
      let n;
      try {
        n = decodeNotice(m.data);
      } catch {
        n = undefined;
      }
      if (n !== undefined) {
        this.beats.heard(partitionOf(n), partitionsOf(n), Date.now());
        this.onBeat?.();
      }
    }
    this.cache.handleNotice(m.subject, m.data);
  }
}
