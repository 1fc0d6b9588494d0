package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// outsideDoc is a document of an outside user (one no auth event names),
// written by the application.
type outsideDoc struct {
	user string
	id   bson.ObjectID
	// moving: an owner change of this document not yet announced; the
	// application leaves the document alone until it is, so that the
	// change event (with updateLookup, the document as it is when the
	// event is read) shows the new owner.
	moving *ownerChange
}

// ownerChange is an outside write that changed a document's userId.
type ownerChange struct {
	id             bson.ObjectID
	from, to       string
	start          time.Time
	unknownOutcome bool // the update failed: it may have been applied
}

// outsideWrites is what the application did to the collection.
type outsideWrites struct {
	mu    sync.Mutex
	names []string // every outside user id used or about to be, for readers
	moves []*ownerChange
	count int64
}

func (o *outsideWrites) addName(name string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.names = append(o.names, name)
}

// randomName is an outside user id for readers ("" when none yet).
func (o *outsideWrites) randomName(rng *rand.Rand) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.names) == 0 {
		return ""
	}
	return o.names[rng.IntN(len(o.names))]
}

func (o *outsideWrites) allNames() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.names...)
}

// movedAhead is how many future owner ids readers look up before they
// own anything, so the issuer has them cached as "no document" when a
// document moves to them.
const movedAhead = 5

// runOutsideWrites changes the collection the way an application does:
// updates of users' own fields, and documents of outside users inserted,
// updated, deleted, and given to another owner (their userId changed:
// always a fresh id, so a notice naming it can only be this change's).
// Failed writes (MongoDB cut) are retried later; a failed owner change
// may have been applied, so its document is left alone from then on.
func runOutsideWrites(ctx context.Context, seed uint64, coll *mongo.Collection, users []string, ow *outsideWrites, notices *noticeLog) {
	rng := rand.New(rand.NewPCG(seed, 3))
	var outside []*outsideDoc
	moved := 0
	for k := range movedAhead {
		ow.addName(fmt.Sprintf("moved-%d", k))
	}
	// pick returns an outside document that no owner change holds, or nil.
	pick := func() *outsideDoc {
		var free []*outsideDoc
		for _, d := range outside {
			if d.moving != nil && notices.announced(d.id.Hex(), d.moving.to, d.moving.start) {
				d.moving = nil
			}
			if d.moving == nil {
				free = append(free, d)
			}
		}
		if len(free) == 0 {
			return nil
		}
		return free[rng.IntN(len(free))]
	}
	for n := 0; ctx.Err() == nil; n++ {
		wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		var err error
		r := rng.IntN(20)
		var d *outsideDoc
		if r >= 15 {
			if d = pick(); d == nil {
				r = 12 // nothing to update, delete or move: insert
			}
		}
		switch {
		case r < 12:
			user := users[rng.IntN(len(users))]
			_, err = coll.UpdateOne(wctx, bson.D{{Key: userIDField, Value: user}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "plan", Value: fmt.Sprintf("plan-%d", n)}}}})
		case r < 15:
			user := fmt.Sprintf("outside-%d", n)
			ow.addName(user)
			var res *mongo.InsertOneResult
			if res, err = coll.InsertOne(wctx, bson.D{{Key: userIDField, Value: user}, {Key: "plan", Value: "new"}}); err == nil {
				id, _ := res.InsertedID.(bson.ObjectID)
				outside = append(outside, &outsideDoc{user: user, id: id})
			}
		case r < 17:
			_, err = coll.UpdateOne(wctx, bson.D{{Key: "_id", Value: d.id}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "lang", Value: fmt.Sprintf("l%d", n)}}}})
		case r < 18:
			if _, err = coll.DeleteOne(wctx, bson.D{{Key: "_id", Value: d.id}}); err == nil {
				outside = removeDoc(outside, d)
			}
		default:
			mv := &ownerChange{id: d.id, from: d.user, to: fmt.Sprintf("moved-%d", moved), start: time.Now()}
			moved++
			ow.addName(fmt.Sprintf("moved-%d", moved+movedAhead-1))
			_, err = coll.UpdateOne(wctx, bson.D{{Key: "_id", Value: d.id}},
				bson.D{{Key: "$set", Value: bson.D{{Key: userIDField, Value: mv.to}}}})
			if err != nil {
				mv.unknownOutcome = true
				outside = removeDoc(outside, d)
			} else {
				d.user, d.moving = mv.to, mv
			}
			ow.mu.Lock()
			ow.moves = append(ow.moves, mv)
			ow.mu.Unlock()
		}
		cancel()
		if err == nil {
			ow.mu.Lock()
			ow.count++
			ow.mu.Unlock()
		}
		time.Sleep(time.Duration(5+rng.IntN(20)) * time.Millisecond)
	}
}

func removeDoc(docs []*outsideDoc, d *outsideDoc) []*outsideDoc {
	for i, x := range docs {
		if x == d {
			return append(docs[:i], docs[i+1:]...)
		}
	}
	return docs
}

// ownerChangeCounts: owner changes made, and how many of them failed
// (outcome unknown).
func (o *outsideWrites) ownerChangeCounts() (int, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	unknown := 0
	for _, mv := range o.moves {
		if mv.unknownOutcome {
			unknown++
		}
	}
	return len(o.moves), unknown
}

// verifyOwnerChanges: every owner change is announced to both owners (a
// user notice naming the new owner and the document, see
// noticeLog.announced) or covered by a later flush-all. One whose update
// failed is checked when the document shows it was applied.
func (h *harness) verifyOwnerChanges(ctx context.Context, ow *outsideWrites, notices *noticeLog) error {
	ow.mu.Lock()
	moves := append([]*ownerChange(nil), ow.moves...)
	ow.mu.Unlock()
	var check []*ownerChange
	for _, mv := range moves {
		if mv.unknownOutcome {
			var doc bson.Raw
			err := h.coll.FindOne(ctx, bson.D{{Key: "_id", Value: mv.id}}).Decode(&doc)
			if errors.Is(err, mongo.ErrNoDocuments) {
				continue
			}
			if err != nil {
				return fmt.Errorf("read back an owner change: %w", err)
			}
			if owner, _ := doc.Lookup(userIDField).StringValueOK(); owner != mv.to {
				continue // not applied
			}
		}
		check = append(check, mv)
	}
	// The last changes' notices may still be on their way.
	var missing []string
	for deadline := time.Now().Add(15 * time.Second); ; {
		missing = missing[:0]
		for _, mv := range check {
			if !notices.announced(mv.id.Hex(), mv.to, mv.start) {
				missing = append(missing, fmt.Sprintf("document %s from %s to %s at %s", mv.id.Hex(), mv.from, mv.to, mv.start.Format(time.RFC3339Nano)))
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		return fmt.Errorf("%d of %d owner changes announced to neither owner nor covered by a later flush-all, e.g. %s",
			len(missing), len(check), strings.Join(missing[:min(5, len(missing))], "; "))
	}
	return nil
}
