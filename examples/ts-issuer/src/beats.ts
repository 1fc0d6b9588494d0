// Whether the worker's notifier is heard, per partition of its change
// stream: package issuer's leaderBeats (issuer/beats.go), with the same
// rules.
//
// A heartbeat names its partition and their count (absent: partition 0 of
// 1, as every worker before partitions sent). The notifier is alive while
// every partition 0..count-1 of some count was heard within the leader
// timeout. Heartbeats are kept per count, so during a rolling change of
// NOTIFIER_PARTITIONS the old and the new replicas' heartbeats do not
// mix. A count first heard at some moment gives its unheard partitions
// until that moment plus the timeout, as the start of following does for
// the whole collection.

import { MAX_NOTICE_PARTITIONS } from "./contract.js";

type Layout = {
  since: number; // first heard (or the start of following), ms
  heard: number[]; // per partition, last heard (0: not yet), ms
};

/** What silence() found. */
export type Silence = {
  /** 0 while some count has every partition heard within the timeout. */
  silentMs: number;
  /** The count the silence is about (the least silent one). */
  of: number;
  /** That count's silent partitions. */
  missing: number[];
};

export class LeaderBeats {
  // At most MAX_NOTICE_PARTITIONS counts of at most as many partitions.
  private byCount = new Map<number, Layout>();

  /**
   * Forgets every heartbeat and counts now as one of an unpartitioned
   * notifier: a leader's first heartbeat is at most its interval away.
   */
  start(now: number): void {
    this.byCount = new Map([[1, { since: now, heard: [now] }]]);
  }

  /** Records a heartbeat of partition part of count at now. */
  heard(part: number, count: number, now: number): void {
    const valid = Number.isInteger(count) && Number.isInteger(part) && count >= 1 && count <= MAX_NOTICE_PARTITIONS;
    if (!valid || part < 0 || part >= count) {
      part = 0;
      count = 1;
    }
    let l = this.byCount.get(count);
    if (l === undefined) {
      l = { since: now, heard: new Array<number>(count).fill(0) };
      this.byCount.set(count, l);
    }
    l.heard[part] = now;
  }

  /**
   * How long the notifier has not been fully heard: zero while some count
   * has every partition heard within timeoutMs, else the shortest time any
   * count's least recent partition has been silent, with that count and
   * its silent partitions.
   */
  silence(now: number, timeoutMs: number): Silence {
    let best: Silence | undefined;
    for (const [count, l] of this.byCount) {
      let worst = 0;
      const gone: number[] = [];
      l.heard.forEach((at, p) => {
        const d = now - (at === 0 ? l.since : at);
        if (d > timeoutMs) {
          gone.push(p);
          worst = Math.max(worst, d);
        }
      });
      if (gone.length === 0) return { silentMs: 0, of: count, missing: [] };
      if (best === undefined || worst < best.silentMs) best = { silentMs: worst, of: count, missing: gone };
    }
    return best ?? { silentMs: 0, of: 1, missing: [] };
  }
}
