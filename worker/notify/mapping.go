package notify

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
)

// Change-event operation types the notifier understands.
const (
	opInsert       = "insert"
	opUpdate       = "update"
	opReplace      = "replace"
	opDelete       = "delete"
	opDrop         = "drop"
	opRename       = "rename"
	opDropDatabase = "dropDatabase"
	opInvalidate   = "invalidate"
)

// Fields the change-stream $project adds (see feedPipeline). The
// mapper also understands the unprojected event as MongoDB emits it.
const (
	fieldUpdatedNames  = "updatedFieldNames"
	fieldRemoved       = "removedFields"
	fieldTruncated     = "truncatedArrays"
	fieldDisambiguated = "disambiguatedPaths"
	fieldDocSize       = "fullDocumentSize"
)

// noticeMapper turns one change event into the notices it calls for. It is
// pure: no IO, no clock, no state.
type noticeMapper struct {
	prefix        string
	userIDField   string
	oversizeBytes int
	// measureFullDocument: the event carries the whole fullDocument (the
	// server cannot compute $bsonSize), so its size is measured here.
	measureFullDocument bool
	// ignoreFields: top-level fields an update may change without a
	// notice (Config.IgnoreFields).
	ignoreFields []string
}

// plannedNotice is one notice to publish, with its subject and
// de-duplication id. PublishedAt is set by the publisher.
type plannedNotice struct {
	Subject string
	MsgID   string
	Notice  events.Notice
}

// mappedChange is what one change event calls for.
type mappedChange struct {
	// Token is the event's resume token (its _id).
	Token bson.Raw
	// Operation is the event's operationType.
	Operation string
	// ClusterTime is the commit time, when the event has one.
	ClusterTime *events.ClusterTime
	// Notices to publish, in order. Empty only when Ignored.
	Notices []plannedNotice
	// Ignored: an update that changed only ignored fields; it publishes
	// nothing, but its position is still checkpointed.
	Ignored bool
	// Flush is the flush-all reason when the event maps to a flush-all.
	Flush events.FlushReason
	// Invalidate: the server closed the feed; reopen with startAfter.
	Invalidate bool
	// Oversize and Size: the changed document's size against the limit
	// (Size -1 when unknown).
	Oversize bool
	Size     int64
	// DuplicateCheckUser is the user whose document count the duplicate
	// guard should check ("" for none).
	DuplicateCheckUser string
	// DocumentID is the changed document's id as a string ("" if unknown).
	DocumentID string
}

// mapChange maps a change event, projected by feedPipeline or as
// MongoDB emits it, to notices. It never fails: an event it cannot
// attribute to a user or a document maps to a flush-all, so no change is
// ever dropped silently.
func (m noticeMapper) mapChange(ev bson.Raw) mappedChange {
	out := mappedChange{Operation: lookupString(ev, "operationType"), Size: -1}
	if tok, ok := ev.Lookup("_id").DocumentOK(); ok {
		// A copy: the token outlives the driver's batch buffer.
		out.Token = slices.Clone(tok)
	}
	if t, i, ok := ev.Lookup("clusterTime").TimestampOK(); ok {
		out.ClusterTime = &events.ClusterTime{T: t, I: i}
	}
	msgID := noticeMsgID(out.Token, ev)

	flush := func(reason events.FlushReason) mappedChange {
		out.Flush = reason
		out.Notices = []plannedNotice{{
			Subject: events.FlushAllSubject(m.prefix),
			MsgID:   msgID,
			Notice: events.Notice{
				SchemaVersion: events.NoticeSchemaVersion,
				Kind:          events.NoticeFlushAll,
				Operation:     out.Operation,
				ClusterTime:   out.ClusterTime,
				Reason:        reason,
			},
		}}
		return out
	}

	switch out.Operation {
	case opInsert, opUpdate, opReplace, opDelete:
	case opDrop, opRename, opDropDatabase:
		return flush(events.FlushCollectionGone)
	case opInvalidate:
		out.Invalidate = true
		return flush(events.FlushInvalidated)
	default:
		// An event type this version does not know may change documents
		// it cannot name: flush rather than ignore it.
		return flush(events.FlushUnattributable)
	}

	key, _ := ev.Lookup("documentKey").DocumentOK()
	after, _ := ev.Lookup("fullDocument").DocumentOK()
	before, _ := ev.Lookup("fullDocumentBeforeChange").DocumentOK()
	if key != nil {
		out.DocumentID = events.DocumentID(key.Lookup("_id"))
	}
	if out.DocumentID == "" && after != nil {
		// documentKey always holds _id on MongoDB; servers that report
		// something else there still name the document in its image.
		out.DocumentID = events.DocumentID(after.Lookup("_id"))
	}
	out.DocumentID = boundedNoticeID(out.DocumentID, maxNoticeDocumentIDBytes)
	afterUser := m.lookupUser(after)
	beforeUser := m.lookupUser(before)
	// documentKey holds the shard key besides _id: on a collection sharded
	// by the user id it names the user even when no image does.
	keyUser := m.lookupUser(key)

	var user string
	if out.Operation == opDelete {
		user = firstNonEmpty(beforeUser, keyUser)
	} else {
		user = firstNonEmpty(afterUser, keyUser, beforeUser)
		out.DuplicateCheckUser = user
		out.Size = m.documentSize(ev, after)
		out.Oversize = out.Size >= 0 && out.Size > int64(m.oversizeBytes)
	}
	if user == "" && out.DocumentID == "" {
		return flush(events.FlushUnattributable)
	}

	n := events.Notice{
		SchemaVersion: events.NoticeSchemaVersion,
		Kind:          events.NoticeUser,
		UserID:        user,
		DocumentID:    out.DocumentID,
		Operation:     out.Operation,
		ClusterTime:   out.ClusterTime,
		Oversize:      out.Oversize,
	}
	var paths []string
	if out.Operation == opUpdate {
		var reported bool
		paths, reported = changedPaths(ev)
		if reported {
			n.ChangedFields = topLevelFields(paths)
		}
		if reported && m.onlyIgnoredPaths(paths, disambiguatedTops(ev)) && !out.Oversize {
			// The user-id field is never ignored (ValidateWithData), so
			// the owner did not change: nobody's cached data is stale.
			out.Ignored = true
			return out
		}
	}
	subject := events.UserNoticeSubject(m.prefix, user)
	if user == "" {
		subject = events.DocumentNoticeSubject(m.prefix, out.DocumentID)
	}
	out.Notices = []plannedNotice{{Subject: subject, MsgID: msgID, Notice: n}}

	if out.Operation == opDelete || user == "" {
		// Already a document notice, or a delete: its pre-image (when
		// there is one) named the owner it had.
		return out
	}
	switch {
	case beforeUser != "" && beforeUser != user:
		// The document moved from one user to another and the pre-image
		// names the previous owner: its cached data is stale too.
		prev := n
		prev.UserID = beforeUser
		out.Notices = append(out.Notices, plannedNotice{
			Subject: events.UserNoticeSubject(m.prefix, beforeUser),
			MsgID:   msgID + "-before",
			Notice:  prev,
		})
	case beforeUser == "" && (out.Operation == opReplace || touchesField(paths, m.userIDField)):
		// The owner may have changed and no pre-image says who it was
		// (updateLookup shows the document as it is now): the document
		// notice tells whoever cached this _id, the previous owner's
		// issuer included.
		if out.DocumentID == "" {
			// Nothing names the previous owner's cache entry.
			return flush(events.FlushUnattributable)
		}
		doc := n
		doc.UserID = ""
		out.Notices = append(out.Notices, plannedNotice{
			Subject: events.DocumentNoticeSubject(m.prefix, out.DocumentID),
			MsgID:   msgID + "-doc",
			Notice:  doc,
		})
	}
	return out
}

// onlyIgnoredPaths reports whether every path an update reported is an
// ignored field or lies under one. A path with a dot is ambiguous: a
// nested path ("lastLogin.sub" under lastLogin) or one top-level field
// whose name holds a dot, which the issuer's projection of lastLogin does
// not remove. Only disambiguatedPaths (MongoDB 6.1+ with
// showExpandedEvents, 8.2+ always, for ambiguous paths) tells them apart,
// so a dotted path counts as ignored only when it names its top-level
// field there; otherwise it is announced. A LOGIN's own write reports
// exactly "lastLogin". None reported is never ignored.
func (m noticeMapper) onlyIgnoredPaths(paths []string, tops map[string]string) bool {
	if len(m.ignoreFields) == 0 || len(paths) == 0 {
		return false
	}
	for _, p := range paths {
		top := p
		if strings.Contains(p, ".") {
			var ok bool
			if top, ok = tops[p]; !ok {
				return false
			}
		}
		if !slices.Contains(m.ignoreFields, top) {
			return false
		}
	}
	return true
}

// disambiguatedTops maps each path of updateDescription.disambiguatedPaths
// (projected or as MongoDB emits it) to its first component, the top-level
// field it belongs to.
func disambiguatedTops(ev bson.Raw) map[string]string {
	d, ok := ev.Lookup(fieldDisambiguated).DocumentOK()
	if !ok {
		d, ok = ev.Lookup("updateDescription", "disambiguatedPaths").DocumentOK()
	}
	if !ok {
		return nil
	}
	elems, _ := d.Elements()
	tops := make(map[string]string, len(elems))
	for _, e := range elems {
		arr, ok := e.Value().ArrayOK()
		if !ok {
			continue
		}
		v, err := arr.IndexErr(0)
		if err != nil {
			continue
		}
		if first, ok := v.StringValueOK(); ok {
			tops[e.Key()] = first
		}
	}
	return tops
}

// touchesField reports whether any changed path is field or a path under
// it ("userId.x", "userId.0").
func touchesField(paths []string, field string) bool {
	return slices.ContainsFunc(paths, func(p string) bool {
		return p == field || strings.HasPrefix(p, field+".")
	})
}

// maxNoticeDocumentIDBytes bounds a document id used in a subject. Any
// document can be written by anyone, and NATS closes the whole connection
// (auth consumer included) on a control line over 4 KiB, so an id that
// would make an over-long subject is not used; the notice falls back to
// the user, or to a flush-all.
const maxNoticeDocumentIDBytes = 512

// lookupUser returns the user id in doc, or "" when it is missing, not a
// string, or longer than any auth event may carry (it cannot be a user of
// this system, and would make an over-long subject).
func (m noticeMapper) lookupUser(doc bson.Raw) string {
	return boundedNoticeID(lookupString(doc, m.userIDField), events.MaxUserIDBytes)
}

func boundedNoticeID(id string, limit int) string {
	if len(id) > limit {
		return ""
	}
	return id
}

// documentSize is the BSON size of the changed document, -1 if unknown.
func (m noticeMapper) documentSize(ev, after bson.Raw) int64 {
	if v, ok := ev.Lookup(fieldDocSize).AsInt64OK(); ok {
		return v
	}
	if m.measureFullDocument && after != nil {
		return int64(len(after))
	}
	return -1
}

// changedPaths returns the paths an update set, removed or truncated, as
// the server reported them (dotted, e.g. "prefs.theme"); reported is false
// when the event does not say (then every field must be assumed changed).
func changedPaths(ev bson.Raw) (paths []string, reported bool) {
	addArray := func(v bson.RawValue, elemField string) {
		arr, ok := v.ArrayOK()
		if !ok {
			return
		}
		reported = true
		vals, _ := arr.Values()
		for _, e := range vals {
			if elemField != "" {
				doc, ok := e.DocumentOK()
				if !ok {
					continue
				}
				e = doc.Lookup(elemField)
			}
			if s, ok := e.StringValueOK(); ok {
				paths = append(paths, s)
			}
		}
	}
	// Projected form: names only, so values never reach the worker.
	addArray(ev.Lookup(fieldUpdatedNames), "")
	addArray(ev.Lookup(fieldRemoved), "")
	addArray(ev.Lookup(fieldTruncated), "field")
	// As MongoDB emits it.
	if ud, ok := ev.Lookup("updateDescription").DocumentOK(); ok {
		if upd, ok := ud.Lookup("updatedFields").DocumentOK(); ok {
			reported = true
			elems, _ := upd.Elements()
			for _, e := range elems {
				paths = append(paths, e.Key())
			}
		}
		addArray(ud.Lookup("removedFields"), "")
		addArray(ud.Lookup("truncatedArrays"), "field")
	}
	return paths, reported
}

// topLevelFields returns the sorted top-level names of paths, or nil when
// there are none or too many for a notice (then every field must be
// assumed changed).
func topLevelFields(paths []string) []string {
	var names []string
	for _, p := range paths {
		top, _, _ := strings.Cut(p, ".")
		if top != "" {
			names = append(names, top)
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	total := 0
	for _, n := range names {
		total += len(n)
	}
	if len(names) == 0 || total > maxChangedFieldsBytes {
		return nil
	}
	return names
}

// maxChangedFieldsBytes bounds the changed-field names a notice lists. An
// update may touch more names than fit in a NATS message; past the bound
// the notice says nothing, which means every field may have changed.
const maxChangedFieldsBytes = 16 << 10

// noticeMsgID derives the Nats-Msg-Id of an event's notice from its resume
// token, so the same event published twice (restart, failover) is stored
// once.
func noticeMsgID(token, ev bson.Raw) string {
	var material []byte
	if s, ok := token.Lookup("_data").StringValueOK(); ok {
		material = []byte(s)
	} else if token != nil {
		material = token
	} else {
		// No token (a server that projected it away would have failed
		// the feed): the event itself is the next best identity.
		material = ev
	}
	sum := sha256.Sum256(material)
	return "cd-" + hex.EncodeToString(sum[:])[:32]
}

// lookupString returns doc[key] if it is a non-empty string.
func lookupString(doc bson.Raw, key string) string {
	if doc == nil {
		return ""
	}
	s, _ := doc.Lookup(key).StringValueOK()
	return s
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
