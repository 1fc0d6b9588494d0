// Package notify turns changes of the custom-data collection into
// invalidation notices (events.Notice) on JetStream, so token issuers drop
// cached custom data at once.
//
// Words: the "stream" is JetStream's; the MongoDB change stream is the
// "feed". Where a reader goes:
//
//   - notifier.go: lease competition and one leadership term per lease
//     held (Notifier.Run, lead); health.
//   - term.go: one term's feed: open, resume, poll, reopen; the position
//     (pending, saved, checkpoint) and publishing, the only place a
//     flush-all is decided and counted.
//   - feed.go: the feed's pipeline and options, and what a feed error means
//     for continuity.
//   - mapping.go: change event → notices; guard.go: the duplicate-user and
//     oversize guards; checkpoint.go: the checkpoint bucket.
//
// The position is checkpointed only after the notice was acknowledged, a
// lease (internal/lease) keeps one publisher active, and any loss of
// continuity publishes a flush-all notice.
package notify
