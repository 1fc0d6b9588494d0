package chaos

import (
	"testing"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
)

// TestNoticeCoverage: a change is covered by a notice naming its document
// at its cluster time or later, by the notice of that very change when its
// event does not name the document, or by a flush-all published from the
// second of its cluster time on; nothing else covers it.
func TestNoticeCoverage(t *testing.T) {
	base := uint32(1_800_000_000)
	ct := func(dt, i uint32) *events.ClusterTime { return &events.ClusterTime{T: base + dt, I: i} }
	user := func(doc string, at *events.ClusterTime) events.Notice {
		return events.Notice{Kind: events.NoticeUser, UserID: "u", DocumentID: doc, ClusterTime: at}
	}
	flushAt := func(dt time.Duration) events.Notice {
		return events.Notice{Kind: events.NoticeFlushAll, PublishedAt: time.Unix(int64(base), 0).Add(dt)}
	}
	change := changeRec{op: "update", docID: "d1", ct: *ct(5, 3)}
	for _, tc := range []struct {
		name    string
		notices []events.Notice
		c       changeRec
		want    coverage
	}{
		{"nothing", nil, change, notCovered},
		{"its own notice", []events.Notice{user("d1", ct(5, 3))}, change, coveredByNotice},
		{"a later notice of the document", []events.Notice{user("d1", ct(9, 1))}, change, coveredByNotice},
		{"an earlier notice of the document", []events.Notice{user("d1", ct(5, 2))}, change, notCovered},
		{"a notice of another document at its time", []events.Notice{user("d2", ct(5, 3))}, change, notCovered},
		{"unnamed document: the notice of its time", []events.Notice{user("d7", ct(5, 3))}, changeRec{op: "update", ct: *ct(5, 3)}, coveredByNotice},
		{"unnamed document: another time", []events.Notice{user("d7", ct(5, 4))}, changeRec{op: "update", ct: *ct(5, 3)}, notCovered},
		{"a flush-all after", []events.Notice{flushAt(7 * time.Second)}, change, coveredByFlush},
		{"a flush-all in its second", []events.Notice{flushAt(5*time.Second + 100*time.Millisecond)}, change, coveredByFlush},
		{"a flush-all a second before", []events.Notice{flushAt(4 * time.Second)}, change, notCovered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := newNoticeLog(func(string) bool { return false })
			for _, n := range tc.notices {
				log.add("", n)
			}
			if got := log.covers(tc.c); got != tc.want {
				t.Fatalf("covers = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestNoticeRepeatedAcrossIncarnations: a flush-all whose Nats-Msg-Id was
// seen on the stream before a wipe still covers the changes before it when
// it comes on the recreated stream (the harness once dropped it as a
// duplicate), and counts there again; within one incarnation a copy counts
// once.
func TestNoticeRepeatedAcrossIncarnations(t *testing.T) {
	log := newNoticeLog(func(string) bool { return false })
	base := time.Unix(1_800_000_000, 0).UTC()
	log.add("fa-1", events.Notice{Kind: events.NoticeFlushAll, PublishedAt: base})
	log.add("fa-1", events.Notice{Kind: events.NoticeFlushAll, PublishedAt: base})
	change := changeRec{op: "update", docID: "d1", ct: events.ClusterTime{T: uint32(base.Unix()) + 10}}
	if got := log.covers(change); got != notCovered {
		t.Fatalf("covered (%d) by a flush-all before it", got)
	}
	log.newIncarnation()
	log.add("fa-1", events.Notice{Kind: events.NoticeFlushAll, PublishedAt: base.Add(20 * time.Second)})
	if got := log.covers(change); got != coveredByFlush {
		t.Fatalf("covers = %d, want covered by the flush-all after it", got)
	}
	if _, flushes := log.counts(); flushes != 2 {
		t.Fatalf("%d flush-alls counted, want 2 (one per incarnation)", flushes)
	}
}
