// Package events holds the wire contracts shared by everyone on the bus:
// authentication events (published by auth services, consumed by the
// worker) and invalidation notices (published by the worker, consumed by
// token issuers), plus the subjects both travel on.
//
// It is the only package a producer or an issuer needs to import.
//
// Auth events follow the shape of Atlas App Services authentication-trigger
// events (operationType, providers, user, time) so that teams migrating from
// App Services recognise them, plus what a bus needs: a unique id (used as
// the JetStream Nats-Msg-Id for de-duplication) and a schema version. Both
// may be left out, so App Services' own events are accepted verbatim: the
// version is then 1 and the consumer supplies the id
// (Decoder.DecodeWithFallbackID).
package events
