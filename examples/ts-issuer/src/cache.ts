// The issuer cache: serves custom data from memory, reads MongoDB (a
// Source) on a miss, and drops what each notice names — package issuer's
// Cache and HandleNotice, without metrics, TTL or the Go API's options.

import { DEFAULT_NOTICE_PREFIX, decodeNotice, decodeUserToken, type Notice } from "./contract.js";
import type { CustomData } from "./source.js";

/** What the cache reads through: a Source, or anything with its get. */
export interface Getter {
  get(userId: string): Promise<CustomData | null>;
}

export type CacheConfig = {
  /** Most users kept (default 10000); the least recently used goes first. */
  maxEntries?: number;
  /** The worker's NOTICE_SUBJECT_PREFIX (default "customdata.invalidated"). */
  prefix?: string;
  log?: (msg: string) => void;
};

/** Why everything was dropped; counted in Cache.stats().flushes. */
export type FlushReason =
  | "notice" // a flush-all notice
  | "sequence_gap" // a skipped stream sequence
  | "unreadable" // a notice subject or user-notice payload that names nobody readable
  | "following" // following started (again)
  | "reconnected"
  | "disconnected"
  | "consumer_lost"
  | "stream_reset" // the stream was deleted or recreated
  | "no_leader" // no heartbeat of the worker's notifier for LeaderTimeout
  | "stopped"
  | "manual";

type Entry = { data: CustomData | null };

// One MongoDB read in progress. stale: an invalidation of its user or of
// everything came while it ran; docs: the document invalidations
// meanwhile (which document it returns is known only at the end).
type Flight = {
  userId: string;
  stale: boolean;
  docs: { id: string; seq: number }[];
  done: Promise<{ data: CustomData | null; docs: Flight["docs"] }>;
};

const maxFlightDocs = 32;

export class Cache {
  private readonly src: Getter;
  private readonly max: number;
  private readonly prefix: string;
  private readonly log: (msg: string) => void;
  // Map keeps insertion order: re-inserting on a hit makes the first key
  // the least recently used.
  private readonly entries = new Map<string, Entry>();
  private readonly byDoc = new Map<string, Set<string>>(); // document _id → users whose entry holds it
  private readonly running = new Set<Flight>();
  private readonly joinable = new Map<string, Flight>();
  private docInvs = 0; // document invalidations so far: orders them against reads
  private keep = false; // whether reads may be kept: only while notices are followed
  private readonly counts = { hits: 0, misses: 0, reads: 0, readErrors: 0, notices: 0 };
  private readonly flushes: Partial<Record<FlushReason, number>> = {};

  constructor(src: Getter, cfg: CacheConfig = {}) {
    this.src = src;
    this.max = cfg.maxEntries ?? 10_000;
    if (!(this.max > 0)) throw new Error(`maxEntries ${cfg.maxEntries}: must be positive`);
    this.prefix = cfg.prefix ?? DEFAULT_NOTICE_PREFIX;
    this.log = cfg.log ?? (() => {});
  }

  /**
   * The user's data (null: no document), from memory when cached. Until a
   * NoticeFollower follows the stream, and whenever it cannot be sure it
   * has seen every notice, nothing is kept: every get reads MongoDB.
   */
  async get(userId: string): Promise<CustomData | null> {
    const e = this.entries.get(userId);
    if (e !== undefined) {
      this.counts.hits++;
      this.entries.delete(userId);
      this.entries.set(userId, e);
      return e.data;
    }
    this.counts.misses++;
    return this.read(userId, this.docInvs);
  }

  /** Whether the cache keeps what it reads; an issuer can use it for readiness. */
  following(): boolean {
    return this.keep;
  }

  stats() {
    return { ...this.counts, entries: this.entries.size, flushes: { ...this.flushes } };
  }

  /** Switches keeping on or off; either way everything so far is dropped. */
  setKeep(keep: boolean, reason: FlushReason): void {
    this.keep = keep;
    this.flush(reason);
  }

  flush(reason: FlushReason = "manual"): void {
    this.entries.clear();
    this.byDoc.clear();
    for (const f of this.running) f.stale = true;
    this.joinable.clear();
    this.flushes[reason] = (this.flushes[reason] ?? 0) + 1;
  }

  /** Drops the user and spoils a read of it in progress (returned, not kept). */
  invalidateUser(userId: string): void {
    this.dropEntry(userId);
    for (const f of this.running) {
      if (f.userId === userId) f.stale = true;
    }
    this.joinable.delete(userId);
  }

  /** Drops every entry holding this document _id (notice form). */
  invalidateDocument(documentId: string): void {
    for (const userId of this.byDoc.get(documentId) ?? []) this.dropEntry(userId);
    const seq = ++this.docInvs;
    for (const f of this.running) {
      if (f.docs.length === maxFlightDocs) {
        f.stale = true;
        if (this.joinable.get(f.userId) === f) this.joinable.delete(f.userId);
      } else {
        f.docs.push({ id: documentId, seq });
      }
    }
  }

  /**
   * Applies one notice as README "Notice contract" defines it (package
   * issuer's HandleNotice):
   *  - <prefix>.user.<token>: drop that user, and the entries holding the
   *    payload's documentId (a document that changed owner names only the
   *    new owner when the server reports no pre-image);
   *  - <prefix>.doc.<token>: drop the entries holding that _id;
   *  - <prefix>.all, or kind flush_all: drop everything;
   *  - <prefix>.heartbeat: nothing to drop (NoticeFollower watches them);
   *  - anything else under the prefix: drop everything, it may have named anyone.
   */
  handleNotice(subject: string, payload: Uint8Array): void {
    if (!subject.startsWith(this.prefix + ".")) return;
    this.counts.notices++;
    const rest = subject.slice(this.prefix.length + 1);
    if (rest === "heartbeat") return;
    let n: Notice | undefined;
    try {
      n = decodeNotice(payload);
    } catch {
      n = undefined;
    }
    if (rest === "all" || n?.kind === "flush_all") {
      this.flush("notice");
      this.log(`flush-all notice (${n?.reason ?? "no reason"}): cache flushed`);
      return;
    }
    const dot = rest.indexOf(".");
    const kind = dot < 0 ? rest : rest.slice(0, dot);
    let id: string;
    try {
      id = decodeUserToken(dot < 0 ? "" : rest.slice(dot + 1));
    } catch (err) {
      this.flush("unreadable");
      this.log(`notice subject ${subject} names nobody readable (${(err as Error).message}): cache flushed`);
      return;
    }
    switch (kind) {
      case "user":
        if (n === undefined && payload.length > 0) {
          // It may have named a document held under someone else.
          this.flush("unreadable");
          this.log(`notice payload on ${subject} unreadable: cache flushed`);
          return;
        }
        this.invalidateUser(id);
        if (n?.documentId) this.invalidateDocument(n.documentId);
        return;
      case "doc":
        this.invalidateDocument(id);
        return;
      default:
        this.flush("unreadable");
        this.log(`unknown notice subject ${subject}: cache flushed`);
    }
  }

  // Joins the user's read in progress, or starts one. A joined read may
  // have begun before a document invalidation the caller saw (asked: the
  // count when it asked); if it returned that document, read again.
  private async read(userId: string, asked: number): Promise<CustomData | null> {
    const f = this.joinable.get(userId) ?? this.load(userId);
    const r = await f.done;
    if (r.data !== null && r.docs.some((x) => x.seq <= asked && x.id === r.data!.documentId)) {
      return (await this.load(userId).done).data;
    }
    return r.data;
  }

  private load(userId: string): Flight {
    const f: Flight = { userId, stale: false, docs: [], done: undefined as never };
    this.running.add(f);
    this.joinable.set(userId, f);
    this.counts.reads++;
    f.done = (async () => {
      try {
        const data = await this.src.get(userId);
        // Runs before any other notice is handled: no await in between.
        if (this.keep && !f.stale && !f.docs.some((x) => x.id === data?.documentId)) this.store(userId, data);
        return { data, docs: f.docs };
      } catch (err) {
        this.counts.readErrors++;
        throw err;
      } finally {
        this.running.delete(f);
        if (this.joinable.get(userId) === f) this.joinable.delete(userId);
      }
    })();
    return f;
  }

  private store(userId: string, data: CustomData | null): void {
    this.dropEntry(userId);
    if (this.entries.size >= this.max) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.dropEntry(oldest.value);
    }
    this.entries.set(userId, { data });
    if (data?.documentId) {
      let users = this.byDoc.get(data.documentId);
      if (users === undefined) this.byDoc.set(data.documentId, (users = new Set()));
      users.add(userId);
    }
  }

  private dropEntry(userId: string): void {
    const e = this.entries.get(userId);
    if (e === undefined) return;
    this.entries.delete(userId);
    const id = e.data?.documentId;
    if (!id) return;
    const users = this.byDoc.get(id);
    users?.delete(userId);
    if (users?.size === 0) this.byDoc.delete(id);
  }
}
