package triggers

import (
	"maps"
	"time"
)

// Merged is one write standing for one or more input writes.
type Merged struct {
	// Write is the merged write. It may be a no-op (IsNoop) when every
	// input it stands for was one; such a Merged needs no database
	// operation, only acknowledgement of its inputs.
	Write Write
	// From holds indexes into the input slice, ascending.
	From []int
}

// Coalesce merges the writes of one batch (given in stream order). It returns rounds: each round
// has at most one Merged per user, and rounds must be executed in order (round k+1 only after
// round k is durable) because an unordered BulkWrite may apply same-user writes in any order.
//
// Consecutive writes of one user are merged only when applying the merged
// write is exactly equivalent to applying them one after the other, whether
// or not the document exists:
//   - both carry the same Upsert flag and neither is a Delete (two Deletes
//     merge into one);
//   - Set: the later value wins;
//   - Max: the greater value is kept when both are time.Time, both integers
//     or both float64; on a tie the earlier value is kept, as $max would.
//     Different strings are not merged because a collection collation may
//     order them differently than bytes do. Anything else merges only when
//     the two values are identical;
//   - SetOnInsert: the earlier write wins entirely. Once the earlier write
//     has run the document exists (upsert) or never will be inserted (no
//     upsert), so a later SetOnInsert can never take effect;
//   - no field ends up under two operators (MongoDB rejects that).
//
// A no-op write merges into its neighbour. A write that fails ValidateWrite
// is never merged, so the worker can reject it alone. Users appear in each
// round in the order of their first write in the batch; the input is not
// modified.
func Coalesce(writes []Write) [][]Merged {
	type chunk struct {
		merged Merged
		sealed bool // holds an invalid write; nothing merges in or out
	}
	perUser := make(map[string][]chunk)
	var users []string
	for i, w := range writes {
		chunks, seen := perUser[w.UserID]
		if !seen {
			users = append(users, w.UserID)
		}
		valid := ValidateWrite(w) == nil
		if n := len(chunks); n > 0 && valid && !chunks[n-1].sealed {
			last := &chunks[n-1].merged
			if merged, ok := mergeWrites(last.Write, w); ok {
				last.Write = merged
				last.From = append(last.From, i)
				continue
			}
		}
		perUser[w.UserID] = append(chunks, chunk{
			merged: Merged{Write: cloneWrite(w), From: []int{i}},
			sealed: !valid,
		})
	}
	var rounds [][]Merged
	for _, u := range users {
		for k, c := range perUser[u] {
			if k == len(rounds) {
				rounds = append(rounds, nil)
			}
			rounds[k] = append(rounds[k], c.merged)
		}
	}
	return rounds
}

// mergeWrites returns one write equivalent to applying acc then w, both for
// the same user, or false when there is none.
func mergeWrites(acc, w Write) (Write, bool) {
	if w.IsNoop() {
		return acc, true
	}
	if acc.IsNoop() {
		return cloneWrite(w), true
	}
	if acc.Delete || w.Delete {
		// Deleting twice is deleting once; a delete next to an update is
		// order-sensitive and cannot be expressed as one operation.
		return acc, acc.Delete && w.Delete
	}
	if acc.Upsert != w.Upsert {
		return Write{}, false
	}
	for f := range w.Set {
		if _, ok := acc.Max[f]; ok {
			return Write{}, false
		}
		if _, ok := acc.SetOnInsert[f]; ok {
			return Write{}, false
		}
	}
	for f := range w.Max {
		if _, ok := acc.Set[f]; ok {
			return Write{}, false
		}
		if _, ok := acc.SetOnInsert[f]; ok {
			return Write{}, false
		}
	}
	merged := Write{
		UserID:      acc.UserID,
		Upsert:      acc.Upsert,
		Set:         maps.Clone(acc.Set),
		Max:         maps.Clone(acc.Max),
		SetOnInsert: maps.Clone(acc.SetOnInsert),
		// w.SetOnInsert is dropped on purpose: see Coalesce.
	}
	if len(w.Set) > 0 && merged.Set == nil {
		merged.Set = make(map[string]any, len(w.Set))
	}
	maps.Copy(merged.Set, w.Set)
	if len(w.Max) > 0 && merged.Max == nil {
		merged.Max = make(map[string]any, len(w.Max))
	}
	for f, b := range w.Max {
		a, ok := merged.Max[f]
		if !ok {
			merged.Max[f] = b
			continue
		}
		m, ok := maxValue(a, b)
		if !ok {
			return Write{}, false
		}
		merged.Max[f] = m
	}
	return merged, true
}

// maxValue returns what $max leaves behind after applying a then b: the
// greater one, or a on a tie. It reports false when it cannot tell without
// knowing how the server orders the two.
func maxValue(a, b any) (any, bool) {
	switch x := a.(type) {
	case time.Time:
		if y, ok := b.(time.Time); ok {
			if y.After(x) {
				return b, true
			}
			return a, true
		}
		return nil, false
	case float64:
		if y, ok := b.(float64); ok {
			if y > x {
				return b, true
			}
			return a, true
		}
		return nil, false
	}
	if x, ok := asInt64(a); ok {
		if y, ok := asInt64(b); ok {
			if y > x {
				return b, true
			}
			return a, true
		}
		return nil, false
	}
	switch a.(type) {
	case nil, bool, string:
		if a == b {
			return a, true
		}
	}
	return nil, false
}

func asInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	}
	return 0, false
}

func cloneWrite(w Write) Write {
	w.Set = maps.Clone(w.Set)
	w.Max = maps.Clone(w.Max)
	w.SetOnInsert = maps.Clone(w.SetOnInsert)
	return w
}
