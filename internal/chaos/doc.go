// Package chaos runs the worker as operators do — nats-server, worker
// replicas and the reference issuer as separate processes from their built
// binaries, MongoDB (the stand-in, or MONGODB_URI) — under a concurrent workload of auth events
// (LOGINs, and CREATEs and DELETEs of users of their own, paced so that
// the worker's ordering applies: see lifecycle.go), hostile events and
// outside writes to the collection (owner changes among them: outside.go),
// token refreshes at the reference issuer (sessions.go),
// while it injects faults at moments drawn from a printed seed: SIGKILL of
// a replica and of the change-stream leader (with NOTIFIER_PARTITIONS
// above 1, the replica leading the most partitions), nats-server restarts, on its
// store and on an empty one, MongoDB outages, a replica paused with
// SIGSTOP for longer than ACK_WAIT. Security is production's: nats-server
// runs on deploy/nats/nats.conf, every process logs in as its user there
// (natsauth.go), and every event is signed with a key the replicas trust
// (eventkeys.go) except the forged ones.
//
// At the end it waits for the system to settle and checks what users
// would see: every user's lastLogin is the newest LOGIN published for
// them, CREATEs and DELETEs took effect exactly as a sequential replay of
// each user's events would (replay.go), hostile events sit in the
// dead-letter stream with their reason and had no effect (the forged ones
// too: unsigned, altered, untrusted, replayed, an operation the key may
// not send), nats-server refused no process anything, every change
// committed to the collection (the harness's own change stream:
// changes.go) is covered by a notice naming its document or a later
// flush-all, every owner
// change was announced to both owners or covered by a later flush-all
// (notices.go), every notifier partition is led by exactly one replica
// and heard again once everything is back (partitions.go), an issuer that followed the notices throughout returns
// every user's current document (a change that went unannounced leaves it
// stale), refreshes at the reference issuer return the current document,
// and no process panicked. Run returns a Summary whose String is
// the one-line result.
//
// TestChaos runs a short version in `make test`; `make chaos` runs it for
// CHAOS_DURATION (default 10m). CHAOS_SEED replays a run; CHAOS_PARTITIONS
// (default 1) partitions the notifier.
package chaos
