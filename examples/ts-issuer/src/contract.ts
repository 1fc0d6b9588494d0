// The notice contract of README "Notice contract (worker → issuers)" and
// events/schema/notice.schema.json, in TypeScript: subjects, user tokens,
// notice payloads and the form of a document _id. The Go side is package
// events (subjects.go, notice.go, docid.go); the tests hold this file to
// the same tables.

import { BSON } from "mongodb";

/** The worker's NOTICE_SUBJECT_PREFIX and NOTICE_STREAM defaults. */
export const DEFAULT_NOTICE_PREFIX = "customdata.invalidated";
export const DEFAULT_NOTICE_STREAM = "CUSTOMDATA_NOTICES";

/** A decoded notice; members a later schema adds are ignored. */
export type Notice = {
  kind: "user" | "flush_all" | "heartbeat";
  userId?: string;
  documentId?: string;
  operation?: string;
  reason?: string;
  /**
   * On a heartbeat of a partitioned notifier (NOTIFIER_PARTITIONS above
   * 1): the partition it speaks for, 0 to partitions-1, of partitions.
   * Absent: partition 0 of 1 (see partitionOf, partitionsOf).
   */
  partition?: number;
  partitions?: number;
};

/** The most partitions a heartbeat may name (events.MaxNoticePartitions). */
export const MAX_NOTICE_PARTITIONS = 64;

/** The partition a heartbeat speaks for (0 when absent). */
export function partitionOf(n: Notice): number {
  return n.partition ?? 0;
}

/** How many partitions the heartbeat's notifier has (1 when absent or 0). */
export function partitionsOf(n: Notice): number {
  return Math.max(1, n.partitions ?? 0);
}

const tokenAlphabet = /^[A-Za-z0-9_-]*$/;
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Unpadded base64url of the id's UTF-8 bytes: one subject token. */
export function encodeUserToken(id: string): string {
  return Buffer.from(id, "utf8").toString("base64url");
}

/**
 * Reverses encodeUserToken, accepting only what it produces, so that each
 * user has one subject (Node's decoder, like Go's, would also take
 * non-zero padding bits and skip characters outside the alphabet).
 */
export function decodeUserToken(token: string): string {
  if (!tokenAlphabet.test(token) || token.length % 4 === 1) {
    throw new Error(`user token ${JSON.stringify(token)}: not unpadded base64url`);
  }
  const bytes = Buffer.from(token, "base64url");
  if (bytes.toString("base64url") !== token) {
    throw new Error(`user token ${JSON.stringify(token)}: not in canonical form`);
  }
  try {
    return utf8.decode(bytes);
  } catch {
    throw new Error(`user token ${JSON.stringify(token)}: not UTF-8`);
  }
}

export function userNoticeSubject(prefix: string, userId: string): string {
  return `${prefix}.user.${encodeUserToken(userId)}`;
}

export function documentNoticeSubject(prefix: string, documentId: string): string {
  return `${prefix}.doc.${encodeUserToken(documentId)}`;
}

export function flushAllSubject(prefix: string): string {
  return `${prefix}.all`;
}

export function heartbeatSubject(prefix: string): string {
  return `${prefix}.heartbeat`;
}

const kinds = new Set(["user", "flush_all", "heartbeat"]);

function optionalString(v: unknown, name: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new Error(`decode notice: ${name} is not a string`);
  return v;
}

// An integer member as Go's int reads it: null is absent, a fraction or
// another type an error.
function optionalInteger(v: unknown, name: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v)) throw new Error(`decode notice: ${name} is not an integer`);
  return v;
}

/**
 * Parses a notice as events.DecodeNotice does: unknown members and null
 * are allowed, a user notice must name a user or a document, a heartbeat's
 * partition must be below its partitions (at most 64), and an unknown kind
 * is an error.
 */
export function decodeNotice(payload: Uint8Array | string): Notice {
  const text = typeof payload === "string" ? payload : Buffer.from(payload).toString("utf8");
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new Error(`decode notice: ${(err as Error).message}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new Error("decode notice: not an object");
  }
  const o = v as Record<string, unknown>;
  const n: Notice = {
    kind: o.kind as Notice["kind"],
    userId: optionalString(o.userId, "userId"),
    documentId: optionalString(o.documentId, "documentId"),
    operation: optionalString(o.operation, "operation"),
    reason: optionalString(o.reason, "reason"),
    partition: optionalInteger(o.partition, "partition"),
    partitions: optionalInteger(o.partitions, "partitions"),
  };
  if (typeof o.kind !== "string" || !kinds.has(o.kind)) {
    throw new Error(`decode notice: unknown kind ${JSON.stringify(o.kind)}`);
  }
  if (n.kind === "user" && !n.userId && !n.documentId) {
    throw new Error("decode notice: user notice names neither user nor document");
  }
  if (n.kind === "heartbeat") {
    const part = partitionOf(n);
    const count = n.partitions ?? 0;
    if (count < 0 || count > MAX_NOTICE_PARTITIONS || part < 0 || part >= partitionsOf(n)) {
      throw new Error(
        `decode notice: heartbeat of partition ${part} of ${count} (want 0 ≤ partition < partitions ≤ ${MAX_NOTICE_PARTITIONS})`,
      );
    }
  }
  return n;
}

/**
 * The form notices give a document _id (events.DocumentID): ObjectId as
 * hex, a string as is, anything else as canonical Extended JSON; "" when
 * absent. The value must be deserialized with promoteValues: false, or an
 * Int32 and a Double of the same value could not be told apart.
 */
export function documentIdOf(id: unknown): string {
  if (id === undefined || id === null) return "";
  if (typeof id === "string") return id;
  if (typeof id === "object" && (id as { _bsontype?: string })._bsontype === "ObjectId") {
    return (id as { toHexString(): string }).toHexString();
  }
  const js = BSON.EJSON.stringify({ v: id }, { relaxed: false });
  return js.slice('{"v":'.length, -1);
}
