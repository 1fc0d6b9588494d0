// Package issuer serves always-fresh custom user data to token issuers.
//
// It reads the data the way the worker writes it — one document per user in
// the custom-data collection, keyed by the user-id field, the first
// inserted (lowest _id) winning when several exist — and keeps it in a
// bounded in-memory cache that the worker's invalidation notices keep
// fresh, so a token minted at refresh carries data at most milliseconds
// old instead of App Services' up to 30 minutes.
//
// Three ways to adopt it, each a Getter:
//
//   - Source: a plain read on every call (no cache).
//   - NewCache(src, CacheConfig{TTL: …}): a cache bounded by a TTL only,
//     for issuers without NATS.
//   - NewCache(src, cfg, WithNotices(js, NoticeConfig{})) and Cache.Run:
//     a cache that drops exactly what each notice names, and everything
//     whenever a notice could have been missed.
//
// Values are shared, not copied: a hit returns a Data view of the cached
// bytes without allocating, and those bytes must not be modified (use
// Data.Decode for a private copy). This package imports events, never the
// worker.
package issuer
