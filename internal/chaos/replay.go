package chaos

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
)

// docState is a lifecycle user's document as the worker's triggers leave
// it: absent, or present with the createdAt of the CREATE that inserted it.
type docState struct {
	exists    bool
	createdAt int64 // Unix milliseconds, when exists
}

func (s docState) String() string {
	if !s.exists {
		return "absent"
	}
	return "createdAt " + time.UnixMilli(s.createdAt).UTC().Format(time.RFC3339Nano)
}

// apply is what the built-in triggers do (triggers/builtin.go): CREATE
// upserts with $setOnInsert only, so a CREATE of an existing document
// changes nothing (the first inserted counts); DELETE removes the
// document, and deleting a missing one changes nothing.
func apply(s docState, ev *lifeEvent) docState {
	switch {
	case ev.op == events.OperationDelete:
		return docState{}
	case s.exists:
		return s
	default:
		return docState{exists: true, createdAt: ev.at.UnixMilli()}
	}
}

// certain reports whether ev took effect for sure: JetStream acknowledged
// it, and either the consumer's ack floor passed it or its store was never
// wiped afterwards (the run drains every event before it checks).
func (ev *lifeEvent) certain(finalEpoch int) bool {
	return ev.acked && (ev.settled || ev.epoch == finalEpoch)
}

// replay applies evs, in the order they were published (which the
// workload makes the order the worker applies them), to a missing
// document, and returns every state it may end in: an event that is not
// certain may or may not have taken effect.
func replay(evs []*lifeEvent, finalEpoch int) []docState {
	states := map[docState]bool{{}: true}
	for _, ev := range evs {
		next := make(map[docState]bool, len(states)+1)
		for s := range states {
			next[apply(s, ev)] = true
			if !ev.certain(finalEpoch) {
				next[s] = true
			}
		}
		states = next
	}
	out := make([]docState, 0, len(states))
	for s := range states {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// lifecycleFields are the fields a lifecycle user's document has: what
// createOnSignup inserts with the default configuration.
var lifecycleFields = []string{"_id", userIDField, "createdAt"}

// verifyLifecycle: every lifecycle user's document is what a sequential
// replay of its CREATEs and DELETEs gives (one of the states, when some
// outcomes are unknown), with no field beyond those CREATE inserts.
func (h *harness) verifyLifecycle(ctx context.Context, users []string, led *lifeLedger, clock *faultClock) error {
	cur, err := h.coll.Find(ctx, bson.D{{Key: userIDField, Value: bson.D{{Key: "$in", Value: users}}}})
	if err != nil {
		return fmt.Errorf("read back lifecycle users: %w", err)
	}
	var docs []bson.Raw
	if err := cur.All(ctx, &docs); err != nil {
		return fmt.Errorf("read back lifecycle users: %w", err)
	}
	byUser := map[string][]bson.Raw{}
	for _, d := range docs {
		u, _ := d.Lookup(userIDField).StringValueOK()
		byUser[u] = append(byUser[u], d)
	}
	_, finalEpoch := clock.now()
	led.mu.Lock()
	defer led.mu.Unlock()
	var wrong []string
	for _, u := range users {
		want := replay(led.byUser[u], finalEpoch)
		got, err := lifecycleState(byUser[u])
		if err != nil {
			wrong = append(wrong, u+": "+err.Error())
			continue
		}
		if !slices.Contains(want, got) {
			var ws []string
			for _, w := range want {
				ws = append(ws, w.String())
			}
			wrong = append(wrong, fmt.Sprintf("%s: %s, a sequential replay of its %d events gives %s", u, got, len(led.byUser[u]), strings.Join(ws, " or ")))
		}
	}
	sort.Strings(wrong)
	if len(wrong) > 0 {
		return fmt.Errorf("CREATEs and DELETEs: %d of %d users differ from a sequential replay, e.g. %s", len(wrong), len(users), strings.Join(wrong[:min(5, len(wrong))], "; "))
	}
	return nil
}

// lifecycleState reads a lifecycle user's state from its documents.
func lifecycleState(docs []bson.Raw) (docState, error) {
	switch len(docs) {
	case 0:
		return docState{}, nil
	case 1:
	default:
		return docState{}, fmt.Errorf("%d documents", len(docs))
	}
	elems, err := docs[0].Elements()
	if err != nil {
		return docState{}, err
	}
	var names []string
	for _, e := range elems {
		names = append(names, e.Key())
	}
	slices.Sort(names)
	if want := slices.Sorted(slices.Values(lifecycleFields)); !slices.Equal(names, want) {
		return docState{}, fmt.Errorf("document has fields %v, want %v", names, want)
	}
	at, ok := docs[0].Lookup("createdAt").DateTimeOK()
	if !ok {
		return docState{}, fmt.Errorf("createdAt is not a date")
	}
	return docState{exists: true, createdAt: at}, nil
}
