// What each notice drops, and reads that overlap an invalidation, on a
// scripted source (the end-to-end test has the real servers).

import assert from "node:assert/strict";
import { test } from "node:test";

import { Cache, type Getter } from "../src/cache.js";
import { encodeUserToken } from "../src/contract.js";
import type { CustomData } from "../src/source.js";

// A source whose documents the test sets, counting reads; a read can be
// held open until the test releases it.
class FakeSource implements Getter {
  docs = new Map<string, { id: string; v: string }>();
  reads = 0;
  hold: Promise<void> | undefined;

  async get(userId: string): Promise<CustomData | null> {
    this.reads++;
    const d = this.docs.get(userId); // read now, returned later: what a slow MongoDB read does
    if (this.hold) await this.hold;
    return d ? { documentId: d.id, json: JSON.stringify({ _id: d.id, userId, v: d.v }), size: 0, oversize: false } : null;
  }
}

const enc = new TextEncoder();
const p = "customdata.invalidated";
const user = (id: string) => `${p}.user.${encodeUserToken(id)}`;
const doc = (id: string) => `${p}.doc.${encodeUserToken(id)}`;
const v = async (c: Cache, id: string) => {
  const d = await c.get(id);
  return d === null ? null : (JSON.parse(d.json) as { v: string }).v;
};

function setup() {
  const src = new FakeSource();
  src.docs.set("ada", { id: "d-ada", v: "1" });
  src.docs.set("bob", { id: "d-bob", v: "1" });
  const c = new Cache(src);
  c.setKeep(true, "following");
  return { src, c };
}

test("nothing is kept until notices are followed", async () => {
  const src = new FakeSource();
  src.docs.set("ada", { id: "d-ada", v: "1" });
  const c = new Cache(src);
  await c.get("ada");
  await c.get("ada");
  assert.equal(src.reads, 2);
  assert.equal(c.following(), false);
});

test("each notice drops what it names, and only that", async () => {
  const cases: { name: string; subject: string; payload?: string; dropped: string[] }[] = [
    { name: "user notice", subject: user("ada"), payload: '{"kind":"user","userId":"ada"}', dropped: ["ada"] },
    { name: "user notice without payload", subject: user("ada"), dropped: ["ada"] },
    { name: "owner change: the new owner's notice names the document", subject: user("carol"), payload: '{"kind":"user","userId":"carol","documentId":"d-bob"}', dropped: ["bob"] },
    { name: "document notice", subject: doc("d-bob"), payload: '{"kind":"user","documentId":"d-bob"}', dropped: ["bob"] },
    { name: "flush-all subject", subject: `${p}.all`, payload: '{"kind":"flush_all","reason":"history_lost"}', dropped: ["ada", "bob"] },
    { name: "flush_all payload on another subject", subject: user("nobody"), payload: '{"kind":"flush_all"}', dropped: ["ada", "bob"] },
    { name: "heartbeat", subject: `${p}.heartbeat`, payload: '{"schemaVersion":1,"kind":"heartbeat"}', dropped: [] },
    { name: "unreadable token", subject: `${p}.user.QR`, dropped: ["ada", "bob"] },
    { name: "unreadable user payload", subject: user("nobody"), payload: "{", dropped: ["ada", "bob"] },
    { name: "unknown kind of subject", subject: `${p}.group.${encodeUserToken("x")}`, dropped: ["ada", "bob"] },
    { name: "another prefix", subject: `other.user.${encodeUserToken("ada")}`, dropped: [] },
  ];
  for (const tc of cases) {
    const { src, c } = setup();
    await c.get("ada");
    await c.get("bob");
    src.docs.set("ada", { id: "d-ada", v: "2" });
    src.docs.set("bob", { id: "d-bob", v: "2" });
    c.handleNotice(tc.subject, enc.encode(tc.payload ?? ""));
    for (const id of ["ada", "bob"]) {
      assert.equal(await v(c, id), tc.dropped.includes(id) ? "2" : "1", `${tc.name}: ${id}`);
    }
  }
});

test("a read that overlaps an invalidation of its user is returned but not kept", async () => {
  const { src, c } = setup();
  let release!: () => void;
  src.hold = new Promise((r) => (release = r));
  const pending = c.get("ada"); // reads v1, held
  src.docs.set("ada", { id: "d-ada", v: "2" });
  c.handleNotice(user("ada"), enc.encode('{"kind":"user","userId":"ada"}'));
  const later = c.get("ada"); // after the notice: must not join the older read
  src.hold = undefined;
  release();
  assert.equal(JSON.parse((await pending)!.json).v, "1", "its callers get what it read");
  assert.equal(JSON.parse((await later)!.json).v, "2");
  assert.equal(await v(c, "ada"), "2");
});

test("a read that overlaps an invalidation of the document it returns is not kept", async () => {
  const { src, c } = setup();
  let release!: () => void;
  src.hold = new Promise((r) => (release = r));
  const pending = c.get("bob"); // reads d-bob v1, held
  src.docs.set("bob", { id: "d-bob", v: "2" });
  c.handleNotice(doc("d-bob"), enc.encode('{"kind":"user","documentId":"d-bob"}'));
  const joined = c.get("bob"); // joins, sees v1 came from an invalidated document, reads again
  src.hold = undefined;
  release();
  assert.equal(JSON.parse((await pending)!.json).v, "1", "its first caller asked before the notice");
  assert.equal(JSON.parse((await joined)!.json).v, "2");
  assert.equal(await v(c, "bob"), "2");
});

test("the least recently used entry goes when the cache is full", async () => {
  const src = new FakeSource();
  for (const id of ["a", "b", "c"]) src.docs.set(id, { id: `d-${id}`, v: "1" });
  const c = new Cache(src, { maxEntries: 2 });
  c.setKeep(true, "following");
  await c.get("a");
  await c.get("b");
  await c.get("a"); // b is now the least recently used
  await c.get("c");
  const before = src.reads;
  await c.get("a");
  assert.equal(src.reads, before, "a stayed");
  await c.get("b");
  assert.equal(src.reads, before + 1, "b was evicted");
});
