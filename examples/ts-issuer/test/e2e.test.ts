// End to end, against the real nats-server, MongoDB (or the stand-in) and
// the worker binary: changes made through the Node driver reach the
// TypeScript cache as the worker's notices, and whatever could hide a lost
// notice flushes it. Only what a user of the cache sees is asserted; every
// wait polls with a generous deadline.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { jetstream, jetstreamManager, type JetStreamManager, StorageType } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type Collection, Int32, Long, MongoClient, ObjectId } from "mongodb";

import { Cache } from "../src/cache.js";
import { encodeUserToken } from "../src/contract.js";
import { NoticeFollower } from "../src/notices.js";
import { Source } from "../src/source.js";
import { eventually, type Proc, startMongo, startNats, startWorker } from "./procs.js";

const enc = new TextEncoder();
const plan = async (c: Cache, userId: string) => {
  const d = await c.get(userId);
  return d === null ? null : (JSON.parse(d.json) as { plan?: string }).plan;
};

describe("the TypeScript issuer on the worker's notices", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "ts-issuer-"));
  const db = `ts_issuer_${randomBytes(4).toString("hex")}`;
  const procs: { name: string; p: Proc }[] = [];
  const ac = new AbortController();
  const runs: Promise<void>[] = [];
  const log = (msg: string) => {
    if (process.env.TS_ISSUER_LOG) console.error(msg);
  };
  let failed = false;
  let standIn = false;
  let nats: Awaited<ReturnType<typeof startNats>>;
  let client: MongoClient;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let coll: Collection;
  let cache: Cache;

  // A cache that follows a stream of the test's own, on which the test
  // alone publishes: what it caches stays stale until a notice, a gap or
  // a reset there says otherwise.
  const own = { stream: "TS_ISSUER_OWN", prefix: "tsown.invalidated" };
  // On disk, so that it outlives a restart of nats-server.
  const ownStream = { name: own.stream, subjects: [`${own.prefix}.>`, "tsown.other"], storage: StorageType.File };
  let ownCache: Cache;

  const it = (name: string, fn: () => Promise<void>) =>
    test(name, async () => {
      try {
        await fn();
      } catch (err) {
        failed = true;
        throw err;
      }
    });

  before(async () => {
    nats = await startNats(path.join(dir, "jetstream"));
    procs.push({ name: "nats-server", p: nats });
    const mongo = await startMongo();
    procs.push({ name: "mongodb stand-in", p: mongo });
    standIn = mongo.standIn;
    procs.push({
      name: "worker",
      p: await startWorker({
        CUSTOMDATA_NATS_URL: nats.url,
        CUSTOMDATA_MONGODB_URI: mongo.uri,
        CUSTOMDATA_MONGODB_DATABASE: db,
        CUSTOMDATA_HTTP_ADDR: "",
        CUSTOMDATA_LOG_LEVEL: "warn",
      }),
    });
    client = new MongoClient(mongo.uri);
    coll = client.db(db).collection("custom_user_data");
    nc = await connect({ servers: nats.url });
    jsm = await jetstreamManager(nc);

    cache = new Cache(new Source(client, { database: db }), { log });
    // checkEveryMs: a recreated stream is noticed within a second rather than 30 s.
    runs.push(new NoticeFollower(nc, cache, { checkEveryMs: 500, log }).run(ac.signal));

    await jsm.streams.add(ownStream);
    ownCache = new Cache(new Source(client, { database: db }), { prefix: own.prefix, log });
    runs.push(
      new NoticeFollower(nc, ownCache, { ...own, checkEveryMs: 500, leaderTimeoutMs: -1, log }).run(ac.signal),
    );

    // Writes wait for the worker's unique index (an insert racing the
    // collection's creation can fail on the stand-in), then for a change
    // made now to reach the cache as a notice.
    await eventually("the worker's userId_unique index", async () =>
      (await coll.indexes().catch(() => [])).some((ix) => ix.name === "userId_unique"),
    );
    await coll.insertOne({ userId: "probe", plan: "v1" });
    await eventually("the cache follows the worker's notices", async () => cache.following() && (await plan(cache, "probe")) === "v1");
    await coll.updateOne({ userId: "probe" }, { $set: { plan: "v2" } });
    await eventually("a first notice", async () => (await plan(cache, "probe")) === "v2");
    await eventually("the test's own stream is followed", () => ownCache.following());
  });

  after(async () => {
    ac.abort();
    await Promise.allSettled(runs);
    await nc?.close();
    if (!standIn) {
      await client?.db(db).dropDatabase().catch(() => {});
    }
    await client?.close();
    const errors: string[] = [];
    for (const { name, p } of procs.reverse()) {
      await p.stop().catch((err: Error) => errors.push(`${name}: ${err.message}`));
      if (failed) console.error(`--- ${name} logs\n${p.logs.join("\n")}`);
    }
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(errors, []);
  });

  it("an insert, an update and a delete through the driver reach the cache", async () => {
    await coll.insertOne({ userId: "ada@example.com", plan: "free" });
    await eventually("the new document", async () => (await plan(cache, "ada@example.com")) === "free");
    const hits = cache.stats().hits;
    assert.equal(await plan(cache, "ada@example.com"), "free");
    assert.ok(cache.stats().hits > hits, "the document is served from the cache");

    await coll.updateOne({ userId: "ada@example.com" }, { $set: { plan: "pro" } });
    await eventually("the update", async () => (await plan(cache, "ada@example.com")) === "pro");

    await coll.deleteOne({ userId: "ada@example.com" });
    await eventually("the delete", async () => (await cache.get("ada@example.com")) === null);
  });

  it("a document given to another user leaves the previous owner's entry", async () => {
    const { insertedId } = await coll.insertOne({ userId: "old-owner", plan: "team" });
    await eventually("the document", async () => (await plan(cache, "old-owner")) === "team");
    assert.equal(await cache.get("new-owner"), null);

    await coll.updateOne({ _id: insertedId }, { $set: { userId: "new-owner" } });
    await eventually("the owner change", async () => {
      const [was, now] = await Promise.all([cache.get("old-owner"), cache.get("new-owner")]);
      return was === null && now?.documentId === insertedId.toHexString();
    });
  });

  it("deletes of documents whose _id is no ObjectId name them as the worker does", async () => {
    // A delete notice names only the document (no pre-images), in the form
    // events.DocumentID gives it: the cache must compute the same.
    const ids = [new Int32(42), Long.fromString("9007199254740993"), { tenant: "t1", n: new Int32(7) }, "string-id"];
    for (const [i, _id] of ids.entries()) {
      const userId = `typed-${i}`;
      await coll.insertOne({ _id: _id as unknown as ObjectId, userId, plan: "x" });
      await eventually(`document ${i}`, async () => (await plan(cache, userId)) === "x");
      await coll.deleteOne({ _id: _id as unknown as ObjectId });
      await eventually(`the delete of _id ${JSON.stringify(_id)}`, async () => (await cache.get(userId)) === null);
    }
  });

  it("the first inserted document counts, read without the omitted fields", async () => {
    const dups = client.db(db).collection("dups"); // no unique index here
    const first = new ObjectId();
    const second = new ObjectId();
    await dups.insertMany([
      { _id: first, userId: "dup", plan: "first", lastLogin: new Date() },
      { _id: second, userId: "dup", plan: "second" },
    ]);
    const src = new Source(client, { database: db, collection: "dups", omitFields: ["lastLogin"], oversizeBytes: 10 });
    const d = await src.get("dup");
    assert.equal(d?.documentId, first.toHexString());
    const doc = JSON.parse(d!.json);
    assert.equal(doc.plan, "first");
    assert.equal("lastLogin" in doc, false);
    assert.equal(d?.oversize, true);
    assert.equal(await src.get("nobody"), null);
  });

  it("a flush-all notice empties the cache", async () => {
    await coll.insertOne({ userId: "fa", plan: "old" });
    await eventually("cached in the test's own cache", async () => (await plan(ownCache, "fa")) === "old");
    await coll.updateOne({ userId: "fa" }, { $set: { plan: "new" } });
    // No notice on the test's own stream: it stays stale...
    assert.equal(await plan(ownCache, "fa"), "old");
    // ...until a flush-all.
    await jetstream(nc).publish(`${own.prefix}.all`, enc.encode('{"schemaVersion":1,"kind":"flush_all","reason":"history_lost"}'));
    await eventually("the flush-all", async () => (await plan(ownCache, "fa")) === "new");
  });

  it("a skipped stream sequence empties the cache", async () => {
    await coll.insertOne({ userId: "gap", plan: "old" });
    await eventually("cached", async () => (await plan(ownCache, "gap")) === "old");
    await coll.updateOne({ userId: "gap" }, { $set: { plan: "new" } });
    assert.equal(await plan(ownCache, "gap"), "old");
    // A message the consumer's filter leaves out, then a notice about
    // someone else: the notice's sequence skips one.
    const js = jetstream(nc);
    await js.publish("tsown.other", enc.encode("not a notice"));
    await js.publish(`${own.prefix}.user.${encodeUserToken("someone-else")}`, enc.encode('{"schemaVersion":1,"kind":"user","userId":"someone-else"}'));
    await eventually("the gap", async () => (await plan(ownCache, "gap")) === "new");
    assert.ok((ownCache.stats().flushes.sequence_gap ?? 0) >= 1);
  });

  it("a recreated stream empties the cache, and it is followed again", async () => {
    await coll.insertOne({ userId: "re", plan: "old" });
    await eventually("cached", async () => (await plan(ownCache, "re")) === "old");
    await coll.updateOne({ userId: "re" }, { $set: { plan: "new" } });
    assert.equal(await plan(ownCache, "re"), "old");
    await jsm.streams.delete(own.stream);
    await jsm.streams.add(ownStream);
    await eventually("the reset", async () => (await plan(ownCache, "re")) === "new");
    await eventually("followed again", async () => (ownCache.stats().flushes.stream_reset ?? 0) > 0 && ownCache.following());
    // Cached again, and kept fresh by the new stream, which starts again at sequence 1.
    await eventually("cached again", async () => {
      await plan(ownCache, "re");
      return ownCache.stats().entries > 0;
    });
    await coll.updateOne({ userId: "re" }, { $set: { plan: "newer" } });
    assert.equal(await plan(ownCache, "re"), "new");
    await jetstream(nc).publish(`${own.prefix}.user.${encodeUserToken("re")}`, enc.encode('{"schemaVersion":1,"kind":"user","userId":"re"}'));
    await eventually("a notice on the new stream", async () => (await plan(ownCache, "re")) === "newer");
  });

  it("without heartbeats of the worker's notifier (of every partition) nothing is kept", async () => {
    const beats = { stream: "TS_ISSUER_BEATS", prefix: "tsbeats.invalidated" };
    await jsm.streams.add({ name: beats.stream, subjects: [`${beats.prefix}.>`], storage: StorageType.Memory });
    const c = new Cache(new Source(client, { database: db }), { prefix: beats.prefix, log });
    const stop = new AbortController();
    const run = new NoticeFollower(nc, c, { ...beats, leaderTimeoutMs: 1000, log }).run(stop.signal);
    try {
      await eventually("no leader: reading through", async () => {
        await c.get("probe");
        return !c.following() && (c.stats().flushes.no_leader ?? 0) > 0;
      });
      const js = jetstream(nc);
      await eventually("a heartbeat: caching again", async () => {
        await js.publish(`${beats.prefix}.heartbeat`, enc.encode('{"schemaVersion":1,"kind":"heartbeat"}'));
        return c.following();
      });

      // A partitioned notifier (NOTIFIER_PARTITIONS=2) whose partition 1
      // has no leader: partition 0's heartbeats alone do not keep the cache.
      const beat = (part: number) =>
        js.publish(`${beats.prefix}.heartbeat`, enc.encode(`{"schemaVersion":1,"kind":"heartbeat","partition":${part},"partitions":2}`));
      const flushes = c.stats().flushes.no_leader ?? 0;
      await eventually("partition 1 silent: reading through", async () => {
        await beat(0);
        return !c.following() && (c.stats().flushes.no_leader ?? 0) > flushes;
      });
      await eventually("both partitions beat: caching again", async () => {
        await beat(0);
        await beat(1);
        return c.following();
      });
    } finally {
      stop.abort();
      await run;
    }
  });

  // Last: it restarts nats-server under everything.
  it("a NATS restart empties the cache, and it follows again", async () => {
    await coll.insertOne({ userId: "nr", plan: "old" });
    await eventually("cached", async () => (await plan(ownCache, "nr")) === "old");
    await coll.updateOne({ userId: "nr" }, { $set: { plan: "new" } });
    assert.equal(await plan(ownCache, "nr"), "old");
    const i = procs.findIndex((x) => x.name === "nats-server");
    await nats.stop();
    nats = await startNats(path.join(dir, "jetstream"), nats.port);
    procs[i] = { name: "nats-server", p: nats };
    await eventually("the reconnect", async () => (await plan(ownCache, "nr")) === "new");
    await eventually("followed again", () => (ownCache.stats().flushes.reconnected ?? 0) > 0 && ownCache.following());
    // The worker's stream is followed again too, and its notices arrive.
    await eventually("the worker's notices followed again", () => (cache.stats().flushes.reconnected ?? 0) > 0 && cache.following());
    await eventually("cached", async () => (await plan(cache, "nr")) === "new" && cache.stats().entries > 0);
    await coll.updateOne({ userId: "nr" }, { $set: { plan: "newest" } });
    await eventually("a notice after the restart", async () => (await plan(cache, "nr")) === "newest");
  });
});
