package authsync

import (
	"time"
)

// nakDelay is the redelivery delay after the numDelivered-th delivery
// failed: steps[numDelivered-1], the last step once the list is exhausted.
func nakDelay(steps []time.Duration, numDelivered uint64) time.Duration {
	if len(steps) == 0 {
		return 0
	}
	if numDelivered == 0 {
		numDelivered = 1
	}
	i := numDelivered - 1
	if i >= uint64(len(steps)) {
		i = uint64(len(steps) - 1)
	}
	return steps[i]
}
