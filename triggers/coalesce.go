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
	return coalesce(writes, true, true)
}

// CoalesceShared is Coalesce without copying and without validating: a
// Merged that stands for a single input write shares that write's maps
// instead of holding a copy (merged writes are always new maps), and every
// input write must already have passed ValidateWrite, as the writes of
// Set.Decide have (an invalid one may be merged). For callers that modify
// neither the input nor the output, such as the worker, which only encodes
// them.
func CoalesceShared(writes []Write) [][]Merged {
	return coalesce(writes, false, false)
}

func coalesce(writes []Write, clone, validate bool) [][]Merged {
	type chunk struct {
		merged Merged
		user   int  // index into users
		sealed bool // holds an invalid write; nothing merges in or out
		owned  bool // merged.Write's maps were made here: update in place
	}
	type userState struct {
		last   int // index into chunks of the user's latest chunk
		rounds int // chunks of the user so far
	}
	// One backing array for the From of every chunk that stands for a
	// single write; a merge appends, which copies (capacity 1).
	indexes := make([]int, len(writes))
	chunks := make([]chunk, 0, len(writes))
	users := make(map[string]int, len(writes))
	var states []userState
	for i, w := range writes {
		indexes[i] = i
		u, seen := users[w.UserID]
		if !seen {
			u = len(states)
			users[w.UserID] = u
			states = append(states, userState{last: -1})
		}
		valid := !validate || ValidateWrite(w) == nil
		if st := &states[u]; st.last >= 0 && valid && !chunks[st.last].sealed {
			c := &chunks[st.last]
			if merged, owned, ok := mergeWrites(c.merged.Write, c.owned, w, clone); ok {
				c.merged.Write, c.owned = merged, owned
				c.merged.From = append(c.merged.From, i)
				continue
			}
		}
		if clone {
			w = cloneWrite(w)
		}
		chunks = append(chunks, chunk{
			merged: Merged{Write: w, From: indexes[i : i+1 : i+1]},
			user:   u,
			sealed: !valid,
			owned:  clone,
		})
		states[u].last = len(chunks) - 1
		states[u].rounds++
	}
	// Round k holds the k-th chunk of every user that has one, users in
	// the order of their first write. Chunks were made in stream order,
	// so a user's chunks come in round order, and the first round's in
	// user order; the later rounds are put in user order.
	nRounds := 0
	for _, st := range states {
		nRounds = max(nRounds, st.rounds)
	}
	if nRounds == 0 {
		return nil
	}
	rounds := make([][]Merged, nRounds)
	rounds[0] = make([]Merged, 0, len(states))
	roundUsers := make([][]int, nRounds)
	seenRounds := make([]int, len(states))
	for _, c := range chunks {
		k := seenRounds[c.user]
		seenRounds[c.user]++
		rounds[k] = append(rounds[k], c.merged)
		if k > 0 {
			roundUsers[k] = append(roundUsers[k], c.user)
		}
	}
	for k := 1; k < nRounds; k++ {
		sortByUser(rounds[k], roundUsers[k])
	}
	return rounds
}

// sortByUser sorts round by the user index of each of its entries
// (distinct within a round), keeping both slices in step.
func sortByUser(round []Merged, users []int) {
	// Rounds after the first are short and usually already in order:
	// insertion sort.
	for i := 1; i < len(round); i++ {
		for j := i; j > 0 && users[j] < users[j-1]; j-- {
			users[j], users[j-1] = users[j-1], users[j]
			round[j], round[j-1] = round[j-1], round[j]
		}
	}
}

// mergeWrites returns one write equivalent to applying acc then w, both for
// the same user, or ok false when there is none; acc and w are left
// unchanged then. accOwned says that acc's maps belong to Coalesce alone
// (made by it): they are then updated in place instead of copied, and owned
// says the same of the result. With clone false, a result that is simply w
// shares w's maps.
func mergeWrites(acc Write, accOwned bool, w Write, clone bool) (merged Write, owned, ok bool) {
	if w.IsNoop() {
		return acc, accOwned, true
	}
	if acc.IsNoop() {
		if clone {
			return cloneWrite(w), true, true
		}
		return w, false, true
	}
	if acc.Delete || w.Delete {
		// Deleting twice is deleting once; a delete next to an update is
		// order-sensitive and cannot be expressed as one operation.
		return acc, accOwned, acc.Delete && w.Delete
	}
	if acc.Upsert != w.Upsert {
		return Write{}, false, false
	}
	for f := range w.Set {
		if _, ok := acc.Max[f]; ok {
			return Write{}, false, false
		}
		if _, ok := acc.SetOnInsert[f]; ok {
			return Write{}, false, false
		}
	}
	for f, b := range w.Max {
		if _, ok := acc.Set[f]; ok {
			return Write{}, false, false
		}
		if _, ok := acc.SetOnInsert[f]; ok {
			return Write{}, false, false
		}
		if a, ok := acc.Max[f]; ok {
			if _, ok := maxValue(a, b); !ok {
				return Write{}, false, false
			}
		}
	}
	// From here on the merge cannot fail.
	merged = Write{
		UserID:      acc.UserID,
		Upsert:      acc.Upsert,
		Set:         acc.Set,
		Max:         acc.Max,
		SetOnInsert: acc.SetOnInsert,
		// w.SetOnInsert is dropped on purpose: see Coalesce.
	}
	if !accOwned {
		merged.Set = maps.Clone(acc.Set)
		merged.Max = maps.Clone(acc.Max)
		merged.SetOnInsert = maps.Clone(acc.SetOnInsert)
	}
	if len(w.Set) > 0 && merged.Set == nil {
		merged.Set = make(map[string]any, len(w.Set))
	}
	maps.Copy(merged.Set, w.Set)
	if len(w.Max) > 0 && merged.Max == nil {
		merged.Max = make(map[string]any, len(w.Max))
	}
	for f, b := range w.Max {
		if a, ok := merged.Max[f]; ok {
			b, _ = maxValue(a, b) // checked above
		}
		merged.Max[f] = b
	}
	return merged, true, true
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
