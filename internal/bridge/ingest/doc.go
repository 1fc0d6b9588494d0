// Package ingest turns the webhooks identity servers send when a user
// signs up, logs in or is deleted into auth events for the worker:
//
//   - Clerk (sent by Svix, Standard Webhooks signatures): user.created →
//     CREATE, user.deleted → DELETE, session.created → LOGIN.
//   - Ory Kratos web_hook actions after registration (CREATE) and after
//     login (LOGIN), with the body the shipped Jsonnet template
//     (deploy/kratos/customdata.jsonnet) renders and Kratos's api_key or
//     basic_auth.
//   - Auth0 Log Streams (custom webhook): success login (s) → LOGIN,
//     success signup (ss) → CREATE, success user deletion (sdu) → DELETE;
//     other log types are counted and ignored.
//
// Each request is authenticated first; one that is not gets 401 and
// publishes nothing. Each event is published through events.Publisher
// with an id derived from the sender's own delivery id (Svix's message
// id, Kratos's flow id, Auth0's log_id), so a delivery the sender retries
// is stored once within JetStream's duplicate window. A body that is
// authenticated but cannot be mapped to an event is dead-lettered, with
// its reason, on the worker's dead-letter stream, never dropped; past
// Config.MaxDeadLetters in one request, the rest share one dead letter
// (events.DeadLetterTooManyUnmappable), or as few as fit. The
// answer is 2xx only once JetStream has acknowledged every event and
// dead letter of the request.
package ingest
