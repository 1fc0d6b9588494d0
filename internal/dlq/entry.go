package dlq

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
)

// Entry is one dead letter.
type Entry struct {
	// Sequence is the dead letter's sequence in the dead-letter stream:
	// what show, redrive and purge select by.
	Sequence uint64    `json:"sequence"`
	Time     time.Time `json:"time"`
	Subject  string    `json:"subject"`
	Reason   string    `json:"reason"`
	Error    string    `json:"error,omitempty"`
	// OriginalSubject, OriginalStream, OriginalSequence and
	// OriginalMsgID say where the event was first published.
	OriginalSubject  string `json:"originalSubject,omitempty"`
	OriginalStream   string `json:"originalStream,omitempty"`
	OriginalSequence uint64 `json:"originalSequence,omitempty"`
	OriginalMsgID    string `json:"originalMsgId,omitempty"`
	// DeliveryCount is how often the worker had received the event when
	// it gave up on it.
	DeliveryCount uint64 `json:"deliveryCount,omitempty"`
	// RedriveCount is how often the event was redriven before this dead
	// letter.
	RedriveCount int `json:"redriveCount"`
	// TruncatedFrom is the original body size when the body had to be
	// cut to fit; such an event cannot be redriven.
	TruncatedFrom int `json:"truncatedFrom,omitempty"`
	// UserID is the event's user id, when the body names one.
	UserID string `json:"userId,omitempty"`
	// Headers and Data are the whole message (show).
	Headers nats.Header `json:"headers,omitempty"`
	Data    []byte      `json:"-"`
}

func entryFromRaw(m *jetstream.RawStreamMsg) Entry {
	return newEntry(m.Sequence, m.Time, m.Subject, m.Header, m.Data)
}

func entryFromMsg(m jetstream.Msg) (Entry, error) {
	meta, err := m.Metadata()
	if err != nil {
		return Entry{}, err
	}
	return newEntry(meta.Sequence.Stream, meta.Timestamp, m.Subject(), m.Headers(), m.Data()), nil
}

func newEntry(seq uint64, at time.Time, subject string, h nats.Header, data []byte) Entry {
	e := Entry{
		Sequence: seq, Time: at.UTC(), Subject: subject, Headers: h, Data: data,
		Reason:          h.Get(events.HeaderDLQReason),
		Error:           h.Get(events.HeaderDLQError),
		OriginalSubject: h.Get(events.HeaderDLQOriginalSubject),
		OriginalStream:  h.Get(events.HeaderDLQOriginalStream),
		OriginalMsgID:   h.Get(events.HeaderDLQOriginalMsgID),
		UserID:          userIDOf(data),
	}
	e.OriginalSequence, _ = strconv.ParseUint(h.Get(events.HeaderDLQStreamSequence), 10, 64)
	e.DeliveryCount, _ = strconv.ParseUint(h.Get(events.HeaderDLQDeliveryCount), 10, 64)
	e.RedriveCount, _ = strconv.Atoi(h.Get(events.HeaderDLQRedriveCount))
	e.TruncatedFrom, _ = strconv.Atoi(h.Get(events.HeaderDLQTruncated))
	return e
}

// userIDOf reads the user id of an event body, leniently: a dead letter
// is often an event the decoder refused.
func userIDOf(data []byte) string {
	if ev, err := events.Decode(data); err == nil {
		return ev.User.ID
	}
	var loose struct {
		User struct {
			ID string `json:"id"`
		} `json:"user"`
	}
	if json.Unmarshal(data, &loose) != nil || events.ValidateUserID(loose.User.ID) != nil {
		return ""
	}
	return loose.User.ID
}
