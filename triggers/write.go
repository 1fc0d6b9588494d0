package triggers

// Write is one intended write to the custom-data document of one user.
// The worker turns it into a MongoDB operation filtered on the configured
// user-id field. Field names are top-level names (no '$', no '.', never
// _id; see ValidateWrite). The user-id field is kept out by the
// configuration that produced the write.
type Write struct {
	// UserID selects the document.
	UserID string
	// Delete removes the user's document(s). When set, the update maps
	// below are empty. Deleting a missing document succeeds.
	Delete bool
	// Upsert creates the document when it is missing; the created document
	// carries the user-id field (from the filter) and SetOnInsert.
	Upsert bool
	// Set, Max and SetOnInsert map field names to values for the MongoDB
	// operators of the same names. Values are string, bool, int, int32,
	// int64, finite float64, time.Time, or nil.
	Set         map[string]any
	Max         map[string]any
	SetOnInsert map[string]any
}

// IsNoop reports whether w would change nothing.
func (w Write) IsNoop() bool {
	return !w.Delete && len(w.Set) == 0 && len(w.Max) == 0 && len(w.SetOnInsert) == 0
}
