package worker

import (
	"encoding/json"

	"github.com/customdata-worker/customdata-worker/events"
)

// roundTripNotice checks that n survives the wire format issuers decode.
func roundTripNotice(n events.Notice) error {
	data, err := json.Marshal(n)
	if err != nil {
		return err
	}
	_, err = events.DecodeNotice(data)
	return err
}
