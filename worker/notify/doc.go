// Package notify turns changes of the custom-data collection into
// invalidation notices (events.Notice) on JetStream, so token issuers drop
// cached custom data at once.
//
// Words: the "stream" is JetStream's; the MongoDB change stream is the
// "feed". Where a reader goes:
//
//   - notifier.go: lease competition and one leadership term per lease
//     held (Notifier.Run, lead); health.
//   - term.go: one term's feed: open, resume, poll, reopen, and the
//     position (pending, saved, checkpoint). A term is given what it needs
//     (termDeps); it never reaches back into the Notifier.
//   - publish.go: publishing, the only place a notice is published and a
//     flush-all counted.
//   - feed.go: where the feed comes from (feedSource), its pipeline and
//     options, and what a feed error means for continuity.
//   - mapping.go: change event → notices (and which flush-all a change
//     calls for); guard.go: the duplicate-user guard and the log limiter;
//     checkpoint.go: the checkpoint bucket.
//
// The position is checkpointed only after the notice was acknowledged, a
// lease (internal/lease) keeps one publisher active, and any loss of
// continuity publishes a flush-all notice.
package notify
