package triggers

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
)

func at(sec int) time.Time { return time.Unix(1714564800+int64(sec), 0).UTC() }

func login(user string, sec int) Write {
	return Write{UserID: user, Max: map[string]any{"lastLogin": at(sec)}}
}

// shape is a compact view of rounds for table tests.
type shape [][]struct {
	user string
	from []int
}

func shapeOf(rounds [][]Merged) string {
	s := ""
	for k, r := range rounds {
		s += fmt.Sprintf("round %d:", k)
		for _, m := range r {
			s += fmt.Sprintf(" %s%v", m.Write.UserID, m.From)
		}
		s += "\n"
	}
	return s
}

func TestCoalesce(t *testing.T) {
	signup := func(user string, sec int) Write {
		return Write{UserID: user, Upsert: true, SetOnInsert: map[string]any{"createdAt": at(sec)}}
	}
	del := func(user string) Write { return Write{UserID: user, Delete: true} }
	set := func(user string, kv ...any) Write {
		w := Write{UserID: user, Set: map[string]any{}}
		for i := 0; i < len(kv); i += 2 {
			w.Set[kv[i].(string)] = kv[i+1]
		}
		return w
	}
	maxw := func(user, field string, v any) Write {
		return Write{UserID: user, Max: map[string]any{field: v}}
	}
	tests := []struct {
		name   string
		in     []Write
		shape  string
		merged map[string][]Write // per user, the merged write of each round
	}{
		{
			name:  "empty batch",
			in:    nil,
			shape: "",
		},
		{
			name:   "many logins of one user become one write with the latest time",
			in:     []Write{login("u1", 1), login("u1", 2), login("u1", 3), login("u1", 4)},
			shape:  "round 0: u1[0 1 2 3]\n",
			merged: map[string][]Write{"u1": {login("u1", 4)}},
		},
		{
			name:   "max keeps the latest time whatever the order",
			in:     []Write{login("u1", 3), login("u1", 9), login("u1", 1), login("u1", 9), login("u1", 5)},
			shape:  "round 0: u1[0 1 2 3 4]\n",
			merged: map[string][]Write{"u1": {login("u1", 9)}},
		},
		{
			name:  "users interleaved, order of first appearance",
			in:    []Write{login("u2", 1), login("u1", 1), login("u2", 2), login("u3", 1), login("u1", 0)},
			shape: "round 0: u2[0 2] u1[1 4] u3[3]\n",
			merged: map[string][]Write{
				"u1": {login("u1", 1)}, "u2": {login("u2", 2)}, "u3": {login("u3", 1)},
			},
		},
		{
			name:  "delete breaks merging into rounds; consecutive deletes merge",
			in:    []Write{login("u1", 1), login("u1", 2), del("u1"), login("u2", 1), del("u1"), signup("u1", 3), login("u1", 4)},
			shape: "round 0: u1[0 1] u2[3]\nround 1: u1[2 4]\nround 2: u1[5]\nround 3: u1[6]\n",
			merged: map[string][]Write{
				"u1": {login("u1", 2), del("u1"), signup("u1", 3), login("u1", 4)},
				"u2": {login("u2", 1)},
			},
		},
		{
			name:  "create then login (different upsert flags) stay in order",
			in:    []Write{signup("u1", 1), login("u1", 2)},
			shape: "round 0: u1[0]\nround 1: u1[1]\n",
		},
		{
			name: "create then upserting login merge",
			in: []Write{signup("u1", 1),
				{UserID: "u1", Upsert: true, Max: map[string]any{"lastLogin": at(2)}}},
			shape: "round 0: u1[0 1]\n",
			merged: map[string][]Write{"u1": {{UserID: "u1", Upsert: true,
				SetOnInsert: map[string]any{"createdAt": at(1)}, Max: map[string]any{"lastLogin": at(2)}}}},
		},
		{
			// Applied in order, the login creates the document and the
			// create's $setOnInsert then does nothing; the merge must agree.
			name: "upserting login then create: the later setOnInsert cannot apply",
			in: []Write{{UserID: "u1", Upsert: true, Max: map[string]any{"lastLogin": at(2)}},
				signup("u1", 1)},
			shape:  "round 0: u1[0 1]\n",
			merged: map[string][]Write{"u1": {{UserID: "u1", Upsert: true, Max: map[string]any{"lastLogin": at(2)}}}},
		},
		{
			name:   "two creates: the earlier setOnInsert wins",
			in:     []Write{signup("u1", 5), signup("u1", 1)},
			shape:  "round 0: u1[0 1]\n",
			merged: map[string][]Write{"u1": {signup("u1", 5)}},
		},
		{
			name:   "set: the later value wins, other fields kept",
			in:     []Write{set("u1", "a", 1, "b", "x"), set("u1", "a", 2, "c", true)},
			shape:  "round 0: u1[0 1]\n",
			merged: map[string][]Write{"u1": {set("u1", "a", 2, "b", "x", "c", true)}},
		},
		{
			name:  "set then max of one field conflict",
			in:    []Write{set("u1", "f", 1), maxw("u1", "f", 2)},
			shape: "round 0: u1[0]\nround 1: u1[1]\n",
		},
		{
			name:  "max then set of one field conflict",
			in:    []Write{maxw("u1", "f", 1), set("u1", "f", 2)},
			shape: "round 0: u1[0]\nround 1: u1[1]\n",
		},
		{
			name: "setOnInsert then set of one field conflict",
			in: []Write{signup("u1", 1),
				{UserID: "u1", Upsert: true, Set: map[string]any{"createdAt": at(2)}}},
			shape: "round 0: u1[0]\nround 1: u1[1]\n",
		},
		{
			name: "conflict pushes only the conflicting user to the next round",
			in:   []Write{set("u1", "f", 1), login("u2", 1), maxw("u1", "f", 2), login("u2", 2), set("u1", "g", 3)},
			// u1's third write merges with its second, not its first.
			shape: "round 0: u1[0] u2[1 3]\nround 1: u1[2 4]\n",
		},
		{
			name:   "integers of different widths merge by value, ties keep the earlier",
			in:     []Write{maxw("u1", "n", int32(2)), maxw("u1", "n", int64(2)), maxw("u1", "n", 1)},
			shape:  "round 0: u1[0 1 2]\n",
			merged: map[string][]Write{"u1": {maxw("u1", "n", int32(2))}},
		},
		{
			name:   "floats merge",
			in:     []Write{maxw("u1", "n", 1.5), maxw("u1", "n", 2.5)},
			shape:  "round 0: u1[0 1]\n",
			merged: map[string][]Write{"u1": {maxw("u1", "n", 2.5)}},
		},
		{
			name:  "integer and float do not merge",
			in:    []Write{maxw("u1", "n", 1), maxw("u1", "n", 2.5)},
			shape: "round 0: u1[0]\nround 1: u1[1]\n",
		},
		{
			name:  "time and number do not merge",
			in:    []Write{maxw("u1", "n", at(1)), maxw("u1", "n", 2)},
			shape: "round 0: u1[0]\nround 1: u1[1]\n",
		},
		{
			name:  "different strings do not merge (collation decides)",
			in:    []Write{maxw("u1", "s", "a"), maxw("u1", "s", "b")},
			shape: "round 0: u1[0]\nround 1: u1[1]\n",
		},
		{
			name:  "equal strings merge",
			in:    []Write{maxw("u1", "s", "a"), maxw("u1", "s", "a")},
			shape: "round 0: u1[0 1]\n",
		},
		{
			name:  "no-op writes are absorbed",
			in:    []Write{{UserID: "u1"}, login("u1", 1), {UserID: "u1", Upsert: true}, del("u1"), {UserID: "u1"}},
			shape: "round 0: u1[0 1 2]\nround 1: u1[3 4]\n",
			merged: map[string][]Write{
				"u1": {login("u1", 1), del("u1")},
			},
		},
		{
			name:  "invalid writes are never merged",
			in:    []Write{login("u1", 1), set("u1", "$x", 1), login("u1", 2)},
			shape: "round 0: u1[0]\nround 1: u1[1]\nround 2: u1[2]\n",
		},
		{
			name:  "later rounds keep the users' first-write order",
			in:    []Write{login("u1", 1), login("u2", 1), set("u2", "$x", 1), login("u3", 1), set("u1", "$x", 1), set("u3", "$x", 1), login("u1", 2)},
			shape: "round 0: u1[0] u2[1] u3[3]\nround 1: u1[4] u2[2] u3[5]\nround 2: u1[6]\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rounds := Coalesce(tt.in)
			if got := shapeOf(rounds); got != tt.shape {
				t.Fatalf("rounds:\n%swant:\n%s", got, tt.shape)
			}
			// CoalesceShared trusts its input to be valid (Set.Decide's).
			if allValid(tt.in) {
				if shared := CoalesceShared(tt.in); !reflect.DeepEqual(shared, rounds) {
					t.Fatalf("CoalesceShared differs from Coalesce:\n%swant:\n%s", shapeOf(shared), tt.shape)
				}
			}
			for user, want := range tt.merged {
				var got []Write
				for _, r := range rounds {
					for _, m := range r {
						if m.Write.UserID == user {
							got = append(got, m.Write)
						}
					}
				}
				assertWrites(t, got, want)
			}
			checkRounds(t, tt.in, rounds)
			if !sameOutcome(tt.in, rounds) {
				t.Errorf("rounds are not equivalent to the writes in order")
			}
		})
	}
}

// A user's sign-up followed by logins, from the default configuration:
// the create stays alone (it upserts, logins do not) and the logins
// collapse into one.
func TestCoalesceDecidedBatch(t *testing.T) {
	s := mustSet(t, Config{})
	var batch []Write
	decide := func(ev events.AuthEvent) {
		ws, err := s.Decide(ev)
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, ws...)
	}
	decide(withTime(event(events.OperationCreate, "u1"), at(0)))
	for i := 1; i <= 50; i++ {
		decide(withTime(event(events.OperationLogin, "u1"), at(i)))
		decide(withTime(event(events.OperationLogin, "u2"), at(100-i)))
	}
	rounds := Coalesce(batch)
	if got, want := shapeOf(rounds), ""; len(rounds) != 2 || len(rounds[0]) != 2 || len(rounds[1]) != 1 {
		t.Fatalf("rounds:\n%s%s", got, want)
	}
	assertWrites(t, []Write{rounds[0][0].Write, rounds[0][1].Write, rounds[1][0].Write}, []Write{
		{UserID: "u1", Upsert: true, SetOnInsert: map[string]any{"createdAt": at(0)}},
		{UserID: "u2", Max: map[string]any{"lastLogin": at(99)}},
		{UserID: "u1", Max: map[string]any{"lastLogin": at(50)}},
	})
	checkRounds(t, batch, rounds)
}

func TestCoalesceDoesNotAliasInput(t *testing.T) {
	in := []Write{
		{UserID: "u1", Set: map[string]any{"a": 1}},
		{UserID: "u1", Set: map[string]any{"b": 2}},
		{UserID: "u2", Set: map[string]any{"c": 3}},
	}
	rounds := Coalesce(in)
	rounds[0][0].Write.Set["z"] = 0
	rounds[0][1].Write.Set["z"] = 0
	if len(in[0].Set) != 1 || len(in[1].Set) != 1 || len(in[2].Set) != 1 {
		t.Fatalf("Coalesce output aliases its input: %+v", in)
	}
	rounds = Coalesce(in)
	in[0].Set["a"] = 100
	if got := rounds[0][0].Write.Set["a"]; got != 1 {
		t.Fatalf("Coalesce output changed with its input: a = %v", got)
	}
}

// checkRounds asserts the structural guarantees: every input index once,
// ascending From, at most one Merged per user per round, a user's rounds
// in input order, merged writes valid whenever their inputs were.
func checkRounds(t *testing.T, in []Write, rounds [][]Merged) {
	t.Helper()
	seen := make([]bool, len(in))
	lastIndex := map[string]int{}
	for k, r := range rounds {
		if len(r) == 0 {
			t.Errorf("round %d is empty", k)
		}
		users := map[string]bool{}
		for _, m := range r {
			if users[m.Write.UserID] {
				t.Errorf("round %d holds user %q twice", k, m.Write.UserID)
			}
			users[m.Write.UserID] = true
			if len(m.From) == 0 || !slices.IsSorted(m.From) {
				t.Errorf("round %d: From %v not ascending", k, m.From)
			}
			allValid := true
			for _, i := range m.From {
				if i < 0 || i >= len(in) || seen[i] {
					t.Fatalf("round %d: index %d out of range or repeated", k, i)
				}
				seen[i] = true
				if in[i].UserID != m.Write.UserID {
					t.Errorf("round %d: input %d is for %q, merged for %q", k, i, in[i].UserID, m.Write.UserID)
				}
				allValid = allValid && ValidateWrite(in[i]) == nil
			}
			if last, ok := lastIndex[m.Write.UserID]; ok && m.From[0] < last {
				t.Errorf("round %d: user %q's writes out of order", k, m.Write.UserID)
			}
			lastIndex[m.Write.UserID] = m.From[len(m.From)-1]
			if allValid {
				if err := ValidateWrite(m.Write); err != nil {
					t.Errorf("round %d: merged write invalid: %v", k, err)
				}
			}
		}
	}
	for i, ok := range seen {
		if !ok {
			t.Errorf("input %d is in no round", i)
		}
	}
}

// The model below applies writes the way MongoDB does (upsert inserts the
// filter's user id plus $setOnInsert, $set and $max; $max replaces only a
// strictly smaller value, comparing across types in BSON order) so that
// Coalesce can be checked against the truth: rounds in order must leave
// exactly the documents the writes in order leave.

type model map[string]map[string]any

func (m model) apply(w Write) {
	if w.Delete {
		delete(m, w.UserID)
		return
	}
	if w.IsNoop() {
		return
	}
	doc, exists := m[w.UserID]
	if !exists {
		if !w.Upsert {
			return
		}
		doc = map[string]any{"userId": w.UserID}
		for f, v := range w.SetOnInsert {
			doc[f] = v
		}
		m[w.UserID] = doc
	}
	for f, v := range w.Set {
		doc[f] = v
	}
	for f, v := range w.Max {
		if old, ok := doc[f]; !ok || bsonCompare(v, old) > 0 {
			doc[f] = v
		}
	}
}

func bsonRank(v any) int {
	switch v.(type) {
	case nil:
		return 1
	case int, int32, int64, float64:
		return 2
	case string:
		return 3
	case bool:
		return 8
	case time.Time:
		return 9
	}
	panic(fmt.Sprintf("model: unexpected %T", v))
}

func bsonCompare(a, b any) int {
	ra, rb := bsonRank(a), bsonRank(b)
	if ra != rb {
		return ra - rb
	}
	num := func(v any) float64 {
		switch x := v.(type) {
		case int:
			return float64(x)
		case int32:
			return float64(x)
		case int64:
			return float64(x)
		}
		return v.(float64)
	}
	cmp := func(less, greater bool) int {
		switch {
		case less:
			return -1
		case greater:
			return 1
		}
		return 0
	}
	switch x := a.(type) {
	case nil:
		return 0
	case string:
		y := b.(string)
		return cmp(x < y, x > y)
	case bool:
		y := b.(bool)
		return cmp(!x && y, x && !y)
	case time.Time:
		return x.Compare(b.(time.Time))
	}
	x, y := num(a), num(b)
	return cmp(x < y, x > y)
}

func sameOutcome(in []Write, rounds [][]Merged) bool {
	sequential, batched := model{}, model{}
	for _, w := range in {
		if ValidateWrite(w) == nil {
			sequential.apply(w)
		}
	}
	for _, r := range rounds {
		for _, m := range r {
			if ValidateWrite(m.Write) == nil {
				batched.apply(m.Write)
			}
		}
	}
	return reflect.DeepEqual(sequential, batched)
}

// TestCoalesceEquivalence checks exact equivalence on many random batches
// (fixed seed, so failures reproduce).
func TestCoalesceEquivalence(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	values := []any{nil, true, false, "a", "b", 1, int32(1), int64(2), 2, 1.5, 2.0, at(1), at(2), at(3)}
	fields := []string{"f", "g", "h"}
	randomFields := func(taken map[string]bool) map[string]any {
		n := rng.IntN(3)
		if n == 0 {
			return nil
		}
		out := map[string]any{}
		for range n {
			f := fields[rng.IntN(len(fields))]
			if taken[f] {
				continue
			}
			taken[f] = true
			out[f] = values[rng.IntN(len(values))]
		}
		return out
	}
	for iter := range 20000 {
		n := 1 + rng.IntN(12)
		in := make([]Write, n)
		for i := range in {
			user := []string{"u1", "u2", "u3"}[rng.IntN(3)]
			if rng.IntN(8) == 0 {
				in[i] = Write{UserID: user, Delete: true}
				continue
			}
			taken := map[string]bool{}
			in[i] = Write{UserID: user, Upsert: rng.IntN(2) == 0,
				Set: randomFields(taken), Max: randomFields(taken), SetOnInsert: randomFields(taken)}
		}
		rounds := Coalesce(in)
		checkRounds(t, in, rounds)
		if !sameOutcome(in, rounds) {
			t.Fatalf("iteration %d: not equivalent\ninput: %+v\nrounds:\n%s%+v", iter, in, shapeOf(rounds), rounds)
		}
		if again := Coalesce(in); !reflect.DeepEqual(again, rounds) {
			t.Fatalf("iteration %d: Coalesce is not deterministic", iter)
		}
		before := make([]Write, len(in))
		for i, w := range in {
			before[i] = cloneWrite(w)
		}
		if !allValid(in) {
			t.Fatalf("iteration %d: invalid random input %+v", iter, in)
		}
		if shared := CoalesceShared(in); !reflect.DeepEqual(shared, rounds) {
			t.Fatalf("iteration %d: CoalesceShared differs from Coalesce", iter)
		}
		if !reflect.DeepEqual(in, before) {
			t.Fatalf("iteration %d: CoalesceShared modified its input", iter)
		}
	}
}

func allValid(ws []Write) bool {
	for _, w := range ws {
		if ValidateWrite(w) != nil {
			return false
		}
	}
	return true
}
