package triggers

// Merged is one write standing for one or more input writes.
type Merged struct {
	Write Write
	// From holds indexes into the input slice, ascending.
	From []int
}

// Coalesce merges the writes of one batch (given in stream order). It returns rounds: each round
// has at most one Merged per user, and rounds must be executed in order (round k+1 only after
// round k is durable) because an unordered BulkWrite may apply same-user writes in any order.
func Coalesce(writes []Write) [][]Merged {
	var rounds [][]Merged
	for i, w := range writes {
		rounds = append(rounds, []Merged{{Write: w, From: []int{i}}})
	}
	return rounds
}
