package issuer

// flight is one MongoDB read in progress. Under Cache.mu, stale is set when
// an invalidation of its user (or of everything) arrives while it runs, and
// docs collects the document invalidations meanwhile: which document the
// read returns is known only when it ends, so a document invalidation
// neither spoils nor splits the reads of other users in advance.
type flight struct {
	stale bool
	docs  []docInvalidation
}

// docInvalidation is one document invalidation, numbered by Cache.docInvs.
type docInvalidation struct {
	id  string
	seq uint64
}

// maxFlightDocs bounds flight.docs; past it the flight is stale, and
// unjoinable.
const maxFlightDocs = 32

// spoiledBy records a document invalidation; false when the flight had
// no room left for it and is now simply stale.
func (f *flight) spoiledBy(inv docInvalidation) bool {
	if len(f.docs) == maxFlightDocs {
		f.stale = true
		return false
	}
	f.docs = append(f.docs, inv)
	return true
}

// keeps reports whether the read's result may be cached.
func (f *flight) keeps(d Data) bool {
	return !f.stale && !invalidated(f.docs, d, ^uint64(0))
}

// invalidated reports whether one of invs, numbered at most asked, names
// the document d holds.
func invalidated(invs []docInvalidation, d Data, asked uint64) bool {
	id := d.DocumentID()
	if id == "" {
		return false
	}
	for _, x := range invs {
		if x.seq <= asked && x.id == id {
			return true
		}
	}
	return false
}

// flightResult is what a read hands every caller that shares it.
type flightResult struct {
	d    Data
	docs []docInvalidation // made while the read ran; read-only once it ended
}
