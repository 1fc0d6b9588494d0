package chaos

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
)

// noticeRec is one notice as the harness heard it.
type noticeRec struct {
	userID, docID string
	publishedAt   time.Time
}

// noticeLog is every notice on the notice stream since the workload
// started, as an issuer reads them: counted once each (by Nats-Msg-Id,
// since a change re-published after a failover carries the same one),
// heartbeats apart (beats). It keeps the notices naming the outside users and
// documents (for the owner-change check) and the flush-alls' times.
type noticeLog struct {
	mu       sync.Mutex
	seen     map[string]bool
	user     int64
	flush    int64
	resets   int
	byUser   map[string][]noticeRec // notices naming outside users
	flushes  []time.Time            // publishedAt of each flush-all
	keepUser func(string) bool
	// byDoc is, by document id, the latest cluster time a notice naming
	// that document carried; atTime, every cluster time a notice (user or
	// flush-all) carried: the change it announces.
	byDoc  map[string]events.ClusterTime
	atTime map[events.ClusterTime]bool
	// beats hears the heartbeats, which are counted apart.
	beats *heartbeatLog
}

// coverage is how a committed change was announced.
type coverage int

const (
	notCovered      coverage = iota
	coveredByNotice          // a notice naming its document, at its cluster time or later
	coveredByFlush           // a flush-all published after it
)

// covers says how change c was announced (verifyChangesAnnounced).
func (n *noticeLog) covers(c changeRec) coverage {
	n.mu.Lock()
	defer n.mu.Unlock()
	if c.docID != "" {
		if ct, ok := n.byDoc[c.docID]; ok && !clusterTimeBefore(ct, c.ct) {
			return coveredByNotice
		}
	} else if n.atTime[c.ct] {
		// A change that does not name its document to the harness (an
		// update on the stand-in: its documentKey is the update spec):
		// the notice of that very change, by its cluster time.
		return coveredByNotice
	}
	at := c.ct.Time()
	for _, f := range n.flushes {
		if !f.Before(at) {
			return coveredByFlush
		}
	}
	return notCovered
}

// newNoticeLog is an empty log keeping the notices of the users keepUser
// accepts.
func newNoticeLog(keepUser func(string) bool) *noticeLog {
	return &noticeLog{seen: map[string]bool{}, byUser: map[string][]noticeRec{}, byDoc: map[string]events.ClusterTime{},
		atTime: map[events.ClusterTime]bool{}, keepUser: keepUser, beats: newHeartbeatLog()}
}

func (n *noticeLog) counts() (int64, int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.user, n.flush
}

// add records a notice. What it covers is recorded for every copy (a
// repeat covers nothing new); it is counted once by Nats-Msg-Id within one
// incarnation of the stream: after a wipe the same ids may come again (a
// flush-all's id is made of the lease session and revision, which a new
// lease bucket repeats), and they are new notices there.
func (n *noticeLog) add(msgID string, nt events.Notice) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if nt.ClusterTime != nil {
		n.atTime[*nt.ClusterTime] = true
	}
	switch nt.Kind {
	case events.NoticeFlushAll:
		n.flushes = append(n.flushes, nt.PublishedAt)
	case events.NoticeUser:
		if nt.DocumentID != "" && nt.ClusterTime != nil {
			if ct, ok := n.byDoc[nt.DocumentID]; !ok || clusterTimeBefore(ct, *nt.ClusterTime) {
				n.byDoc[nt.DocumentID] = *nt.ClusterTime
			}
		}
		if nt.UserID != "" && n.keepUser(nt.UserID) {
			n.byUser[nt.UserID] = append(n.byUser[nt.UserID], noticeRec{userID: nt.UserID, docID: nt.DocumentID, publishedAt: nt.PublishedAt})
		}
	}
	if msgID != "" {
		if n.seen[msgID] {
			return
		}
		n.seen[msgID] = true
	}
	switch nt.Kind {
	case events.NoticeFlushAll:
		n.flush++
	case events.NoticeUser:
		n.user++
	}
}

// newIncarnation is called when the notice stream was recreated, before
// it is followed again from its first notice.
func (n *noticeLog) newIncarnation() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.seen)
	n.resets++
}

// announced reports whether an owner change of document docID to owner
// newOwner, started at start, is covered: by a flush-all published after
// it started, or by a user notice naming the new owner and the document.
// That notice tells both owners' caches: the new owner's by its subject,
// the previous owner's by its documentId (an issuer drops every entry
// holding that document; README, Issuer side). Without pre-images, real
// MongoDB also publishes it on doc.<token>; with them, the previous owner
// gets a user notice of its own; the stand-in, which reports no
// updateDescription, sends only the first. newOwner is never used before
// the change, so a notice naming it cannot be an older change's.
func (n *noticeLog) announced(docID, newOwner string, start time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, f := range n.flushes {
		if !f.Before(start) {
			return true
		}
	}
	for _, r := range n.byUser[newOwner] {
		if r.docID == docID {
			return true
		}
	}
	return false
}

// recordNotices follows the notice stream from its end, as an issuer does,
// until the returned stop is called. A stream recreated (a nats-server
// restarted with an empty store) is followed from its first notice.
func (h *harness) recordNotices(ctx context.Context) (*noticeLog, func(), error) {
	log := newNoticeLog(func(u string) bool { return strings.HasPrefix(u, "outside-") || strings.HasPrefix(u, "moved-") })
	created, cc, err := h.followNotices(ctx, log, jetstream.DeliverNewPolicy)
	if err != nil {
		return nil, nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-rctx.Done():
				if cc != nil {
					cc.Stop()
				}
				return
			case <-time.After(time.Second):
			}
			ictx, cancel := context.WithTimeout(rctx, 5*time.Second)
			var info *jetstream.StreamInfo
			s, err := h.js.Stream(ictx, "CUSTOMDATA_NOTICES")
			if err == nil {
				info, err = s.Info(ictx)
			}
			cancel()
			if err != nil || info.Created.Equal(created) {
				continue
			}
			// Stopped first: nothing of the new stream is counted under
			// the old one's ids (newIncarnation).
			if cc != nil {
				cc.Stop()
				cc = nil
			}
			log.newIncarnation()
			c, next, err := h.followNotices(rctx, log, jetstream.DeliverAllPolicy)
			if err != nil {
				continue // created unchanged: tried again in a second
			}
			created, cc = c, next
		}
	}()
	return log, func() { cancel(); <-done }, nil
}

// followNotices starts an ordered consumer on the notice stream feeding
// log; it returns the stream's creation time as it read it.
func (h *harness) followNotices(ctx context.Context, log *noticeLog, from jetstream.DeliverPolicy) (time.Time, jetstream.ConsumeContext, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := h.js.Stream(ctx, "CUSTOMDATA_NOTICES")
	if err != nil {
		return time.Time{}, nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return time.Time{}, nil, err
	}
	cons, err := h.js.OrderedConsumer(ctx, "CUSTOMDATA_NOTICES", jetstream.OrderedConsumerConfig{DeliverPolicy: from})
	if err != nil {
		return time.Time{}, nil, err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		nt, err := events.DecodeNotice(m.Data())
		if err != nil {
			return
		}
		if nt.Kind == events.NoticeHeartbeat {
			if md, err := m.Metadata(); err == nil {
				log.beats.add(nt, md.Timestamp, h.cfg.Partitions)
			}
			return
		}
		log.add(m.Headers().Get(jetstream.MsgIDHeader), nt)
	})
	if err != nil {
		return time.Time{}, nil, err
	}
	return info.Created, cc, nil
}
