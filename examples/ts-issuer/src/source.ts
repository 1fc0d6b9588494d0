// Reads one user's custom data with the worker's rules (README "Issuer
// side": one document per user, the first inserted counts), as package
// issuer's Source does.

import { BSON, type Collection, type MongoClient, ReadConcern, ReadPreference } from "mongodb";

import { documentIdOf } from "./contract.js";

/** Where custom data lives; every member defaults to the worker's. */
export type SourceConfig = {
  database?: string; // default "app"
  collection?: string; // default "custom_user_data"
  userIdField?: string; // default "userId"
  oversizeBytes?: number; // default 16384; negative: no limit
  /** Top-level fields left out of what is read (pair with NOTICE_IGNORE_FIELDS). */
  omitFields?: string[];
  readTimeoutMs?: number; // default 10000
};

/** One user's document, as read. */
export type CustomData = {
  /** The _id in notice form (contract.documentIdOf). */
  documentId: string;
  /** The document as relaxed Extended JSON, rendered once per read: what a token carries. */
  json: string;
  /** BSON size of what was read. */
  size: number;
  oversize: boolean;
};

export class Source {
  private readonly coll: Collection;
  private readonly field: string;
  private readonly projection: Record<string, 0> | undefined;
  private readonly limit: number;
  private readonly timeout: number;

  constructor(client: MongoClient, cfg: SourceConfig = {}) {
    this.field = cfg.userIdField ?? "userId";
    if (this.field === "" || this.field === "_id" || this.field.startsWith("$")) {
      throw new Error(`user-id field ${JSON.stringify(this.field)}: must be a document field other than _id`);
    }
    const omit = [...new Set(cfg.omitFields ?? [])].sort();
    for (const f of omit) {
      if (f === "" || f === "_id" || f === this.field || f.startsWith("$") || /[.\0]/.test(f)) {
        throw new Error(`omit fields: ${JSON.stringify(f)} is not a top-level field other than _id and the user-id field`);
      }
    }
    this.projection = omit.length > 0 ? Object.fromEntries(omit.map((f) => [f, 0 as const])) : undefined;
    this.limit = cfg.oversizeBytes ?? 16384;
    this.timeout = cfg.readTimeoutMs ?? 10_000;
    // From the primary with read concern majority, whatever the client's
    // defaults: a re-read after a notice must see the change it announced
    // (a lagging secondary would not), and a write that can still be
    // rolled back — which no change event would announce — is never cached.
    this.coll = client.db(cfg.database ?? "app").collection(cfg.collection ?? "custom_user_data", {
      readPreference: ReadPreference.primary,
      readConcern: new ReadConcern("majority"),
    });
  }

  /** The user's document, or null when there is none. */
  async get(userId: string): Promise<CustomData | null> {
    // Sorted on _id, so the first inserted wins even when the worker runs
    // with ALLOW_DUPLICATE_USERS (no unique index).
    const raw = await this.coll.findOne(
      { [this.field]: userId },
      { sort: { _id: 1 }, projection: this.projection, raw: true, maxTimeMS: this.timeout },
    );
    if (raw === null) return null;
    const bytes = raw as unknown as Uint8Array;
    // promoteValues: false keeps Int32, Int64 and Double apart, as the
    // worker's documentId does.
    const doc = BSON.deserialize(bytes, { promoteValues: false });
    return {
      documentId: documentIdOf(doc._id),
      json: BSON.EJSON.stringify(doc, { relaxed: true }),
      size: bytes.byteLength,
      oversize: this.limit >= 0 && bytes.byteLength > this.limit,
    };
  }
}
