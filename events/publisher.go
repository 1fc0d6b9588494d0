package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher publishes auth events for auth services. It validates each
// event with the same rules the worker applies, publishes it with the event
// id as Nats-Msg-Id (a signed one with SignedMsgID), and returns only once
// JetStream has acknowledged it.
type Publisher struct {
	js      jetstream.JetStream
	prefix  string
	decoder Decoder
	signer  *Signer
}

// PublisherOption configures a Publisher.
type PublisherOption func(*Publisher) error

// WithSubjectPrefix sets the auth subject prefix (default DefaultAuthPrefix).
func WithSubjectPrefix(prefix string) PublisherOption {
	return func(p *Publisher) error { p.prefix = prefix; return nil }
}

// WithSigner signs every event with s (see Signer): required when the
// worker is configured with trusted signers.
func WithSigner(s *Signer) PublisherOption {
	return func(p *Publisher) error { p.signer = s; return nil }
}

// NewPublisher returns a Publisher on js.
func NewPublisher(js jetstream.JetStream, opts ...PublisherOption) (*Publisher, error) {
	p := &Publisher{js: js, prefix: DefaultAuthPrefix}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(p); err != nil {
			return nil, fmt.Errorf("events: publisher: %w", err)
		}
	}
	if err := ValidatePrefix(p.prefix); err != nil {
		return nil, err
	}
	return p, nil
}

// Publish validates ev and publishes it. A retried Publish of the same event
// (same ID) within the stream's duplicate window is stored once. An event
// without SchemaVersion gets SchemaVersion; one without ID gets a fresh
// NewEventID, so a retry of such an event is stored again: set ID (as
// NewAuthEvent does) to have retries de-duplicated.
func (p *Publisher) Publish(ctx context.Context, ev AuthEvent) (*jetstream.PubAck, error) {
	if ev.SchemaVersion == 0 {
		ev.SchemaVersion = SchemaVersion
	}
	if ev.ID == "" {
		ev.ID = NewEventID()
	}
	if err := p.decoder.Validate(ev); err != nil {
		return nil, err
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode auth event %s: %w", ev.ID, err)
	}
	// Round-trip through the strict decoder so nothing the worker would
	// reject (oversize, forbidden keys in user data) leaves the producer.
	if _, err := p.decoder.Decode(data); err != nil {
		return nil, err
	}
	msg := &nats.Msg{Subject: AuthSubject(p.prefix, ev.OperationType), Data: data}
	if p.signer != nil {
		if err := p.signer.Sign(msg); err != nil {
			return nil, err
		}
	}
	subject := msg.Subject
	msgID := ev.ID
	if p.signer != nil {
		msgID = msg.Header.Get(nats.MsgIdHdr) // SignedMsgID, set by Sign
	}
	ack, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID))
	if err != nil {
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			return nil, fmt.Errorf("publish auth event %s on %s: %w: %w", ev.ID, subject, ErrNotStored, err)
		}
		return nil, fmt.Errorf("publish auth event %s on %s: %w", ev.ID, subject, err)
	}
	return ack, nil
}
