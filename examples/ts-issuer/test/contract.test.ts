// The contract's pure parts, on the tables of package events' own tests
// (subjects_test.go, notice_test.go, docid_test.go).

import assert from "node:assert/strict";
import { test } from "node:test";

import { BSON } from "mongodb";

import {
  decodeNotice,
  decodeUserToken,
  documentIdOf,
  encodeUserToken,
  partitionOf,
  partitionsOf,
  userNoticeSubject,
} from "../src/contract.js";

const trickyIds = [
  "a", "u1", "a.b", "a..b", ".", "*", ">", "a.*.>", "a b", " ", "user@example.com",
  "ü", "ユーザー", "😀", "a/b+c=", "==", "all", "user", "doc", "_-", "QQ",
  "\u00a0", "x".repeat(256), "é".repeat(128),
];

test("user tokens round-trip and stay in [A-Za-z0-9_-]", () => {
  for (const id of ["", ...trickyIds]) {
    const tok = encodeUserToken(id);
    assert.match(tok, /^[A-Za-z0-9_-]*$/, id);
    assert.equal(decodeUserToken(tok), id);
  }
  // The README's example and Go's EncodeUserToken agree.
  assert.equal(userNoticeSubject("customdata.invalidated", "ada@example.com"), "customdata.invalidated.user.YWRhQGV4YW1wbGUuY29t");
});

test("user tokens other than the canonical ones are refused", () => {
  for (const tok of ["QR", "QUJ", "Q\nQ", "QQ\r", "QQ==", "Q", "a+b/", "QQ.QQ", "_w", "!!"]) {
    assert.throws(() => decodeUserToken(tok), /user token/, JSON.stringify(tok));
  }
});

test("notices decode as events.DecodeNotice decodes them", () => {
  const cases: {
    name: string;
    in: string;
    kind?: string;
    userId?: string;
    documentId?: string;
    partition?: number;
    partitions?: number;
    err?: RegExp;
  }[] = [
    {
      name: "user notice",
      in: '{"schemaVersion":1,"kind":"user","userId":"a.b","documentId":"66310c1e9d1f0a0001a1b2c3","operation":"update","changedFields":["lastLogin"],"clusterTime":{"t":1714564800,"i":3},"publishedAt":"2024-05-01T12:00:00Z"}',
      kind: "user", userId: "a.b", documentId: "66310c1e9d1f0a0001a1b2c3",
    },
    { name: "delete naming only the document", in: '{"schemaVersion":1,"kind":"user","documentId":"d1","operation":"delete"}', kind: "user", documentId: "d1" },
    { name: "flush-all", in: '{"schemaVersion":1,"kind":"flush_all","reason":"history_lost","operation":"invalidate"}', kind: "flush_all" },
    { name: "heartbeat", in: '{"schemaVersion":1,"kind":"heartbeat"}', kind: "heartbeat" },
    { name: "later schema, unknown members and nulls", in: '{"schemaVersion":2,"kind":"user","userId":"u1","documentId":null,"newField":{"x":1}}', kind: "user", userId: "u1" },
    { name: "user notice without ids", in: '{"schemaVersion":1,"kind":"user"}', err: /neither user nor document/ },
    { name: "unknown kind", in: '{"schemaVersion":1,"kind":"partial","userId":"u1"}', err: /unknown kind/ },
    { name: "missing kind", in: '{"schemaVersion":1,"userId":"u1"}', err: /unknown kind/ },
    { name: "malformed", in: '{"kind":', err: /decode notice/ },
    { name: "empty", in: "", err: /decode notice/ },
    { name: "wrong type", in: '{"kind":"user","userId":1}', err: /decode notice/ },
    // Heartbeats of a partitioned notifier (events' schema_test.go).
    { name: "heartbeat of partition 3 of 4", in: '{"kind":"heartbeat","partition":3,"partitions":4}', kind: "heartbeat", partition: 3, partitions: 4 },
    { name: "heartbeat partition fields null", in: '{"kind":"heartbeat","partition":null,"partitions":null}', kind: "heartbeat", partition: 0, partitions: 1 },
    { name: "heartbeat of 4, partition absent", in: '{"kind":"heartbeat","partitions":4}', kind: "heartbeat", partition: 0, partitions: 4 },
    { name: "heartbeat of 0 partitions", in: '{"kind":"heartbeat","partitions":0}', kind: "heartbeat", partition: 0, partitions: 1 },
    { name: "last partition of 64", in: '{"kind":"heartbeat","partition":63,"partitions":64}', kind: "heartbeat", partition: 63, partitions: 64 },
    { name: "heartbeat partition not below partitions", in: '{"kind":"heartbeat","partition":4,"partitions":4}', err: /heartbeat of partition/ },
    { name: "heartbeat partition without partitions", in: '{"kind":"heartbeat","partition":1}', err: /heartbeat of partition/ },
    { name: "heartbeat negative partition", in: '{"kind":"heartbeat","partition":-1,"partitions":2}', err: /heartbeat of partition/ },
    { name: "heartbeat of 65 partitions", in: '{"kind":"heartbeat","partition":0,"partitions":65}', err: /heartbeat of partition/ },
    { name: "heartbeat negative partitions", in: '{"kind":"heartbeat","partitions":-1}', err: /heartbeat of partition/ },
    { name: "heartbeat partition a string", in: '{"kind":"heartbeat","partition":"1","partitions":2}', err: /not an integer/ },
    { name: "heartbeat partition a fraction", in: '{"kind":"heartbeat","partition":0.5,"partitions":2}', err: /not an integer/ },
    // Only heartbeats say which partition they speak for.
    { name: "user notice with partition members", in: '{"kind":"user","userId":"u","partition":7,"partitions":2}', kind: "user", userId: "u", partition: 7, partitions: 2 },
  ];
  for (const c of cases) {
    if (c.err) {
      assert.throws(() => decodeNotice(c.in), c.err, c.name);
      continue;
    }
    const n = decodeNotice(c.in);
    assert.equal(n.kind, c.kind, c.name);
    assert.equal(n.userId, c.userId, c.name);
    assert.equal(n.documentId, c.documentId, c.name);
    assert.equal(partitionOf(n), c.partition ?? 0, c.name);
    assert.equal(partitionsOf(n), c.partitions ?? 1, c.name);
  }
});

test("document ids take the form events.DocumentID gives them", () => {
  // Each _id goes through BSON as a read does (promoteValues: false).
  const cases: [string, string][] = [
    ['{"_id": {"$oid": "63f5b0c1a5e4f3b1c7a3d2e1"}}', "63f5b0c1a5e4f3b1c7a3d2e1"],
    ['{"_id": "plain"}', "plain"],
    ['{"_id": {"$numberLong": "9007199254740993"}}', '{"$numberLong":"9007199254740993"}'],
    ['{"_id": {"$numberInt": "42"}}', '{"$numberInt":"42"}'],
    ['{"_id": {"$numberDouble": "42.0"}}', '{"$numberDouble":"42.0"}'],
    ['{"_id": {"a": {"$numberInt": "1"}}}', '{"a":{"$numberInt":"1"}}'],
    ['{"_id": {"$binary": {"base64": "AAECAwQFBgcICQoLDA0ODw==", "subType": "04"}}}', '{"$binary":{"base64":"AAECAwQFBgcICQoLDA0ODw==","subType":"04"}}'],
    ['{"_id": null}', ""],
    ["{}", ""],
  ];
  for (const [ext, want] of cases) {
    const bytes = BSON.serialize(BSON.EJSON.parse(ext, { relaxed: false }));
    const doc = BSON.deserialize(bytes, { promoteValues: false });
    assert.equal(documentIdOf(doc._id), want, ext);
  }
});
