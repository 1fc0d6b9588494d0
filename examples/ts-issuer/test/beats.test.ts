// Per-partition liveness of the worker's notifier, on the table of package
// issuer's TestLeaderBeatsNeedEveryPartition (issuer/beats_test.go).

import assert from "node:assert/strict";
import { test } from "node:test";

import { LeaderBeats } from "../src/beats.js";

test("the notifier is alive only while every partition of one count is heard", () => {
  const timeout = 30_000;
  const t0 = 1_800_000_000_000;
  const at = (s: number) => t0 + s * 1000;
  type Beat = [sec: number, part: number, count: number];
  const cases: { name: string; beats: Beat[]; now: number; silent: boolean; missing: number[] }[] = [
    { name: "start of following counts", beats: [], now: 20, silent: false, missing: [] },
    { name: "nothing heard after the start", beats: [], now: 31, silent: true, missing: [0] },
    { name: "old heartbeats (0 of 1) keep it alive", beats: [[25, 0, 1]], now: 50, silent: false, missing: [] },
    { name: "every partition heard", beats: [[10, 0, 3], [11, 1, 3], [12, 2, 3]], now: 40, silent: false, missing: [] },
    {
      name: "one partition silent",
      beats: [[10, 0, 3], [11, 1, 3], [12, 2, 3], [38, 0, 3], [39, 1, 3]],
      now: 43,
      silent: true,
      missing: [2],
    },
    { name: "a partition never heard has the layout's first beat as grace", beats: [[10, 0, 2]], now: 35, silent: false, missing: [] },
    { name: "…until that runs out", beats: [[10, 0, 2], [38, 0, 2]], now: 41, silent: true, missing: [1] },
    // A rolling change of NOTIFIER_PARTITIONS: the old count's beats keep
    // it alive while the new count is incomplete.
    { name: "old count alive, new count incomplete", beats: [[10, 0, 4], [30, 0, 1], [40, 0, 4]], now: 45, silent: false, missing: [] },
    { name: "invalid partition counts as 0 of 1", beats: [[40, 5, 2]], now: 50, silent: false, missing: [] },
  ];
  for (const c of cases) {
    const b = new LeaderBeats();
    b.start(t0);
    for (const [sec, part, count] of c.beats) b.heard(part, count, at(sec));
    const s = b.silence(at(c.now), timeout);
    assert.equal(s.silentMs > 0, c.silent, `${c.name}: silent ${s.silentMs} ms`);
    assert.deepEqual(s.missing, c.missing, c.name);
  }
});
