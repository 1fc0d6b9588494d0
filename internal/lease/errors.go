package lease

import "errors"

// ErrLost ends a leadership term: a renewal failed, so another
// replica may hold the lease by now.
var ErrLost = errors.New("notifier lease lost")
