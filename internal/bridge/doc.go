// Package bridge answers the token-time hooks of identity servers the
// team did not write, with each user's custom data from package issuer (a
// cache kept fresh by the worker's notices):
//
//   - Supabase Auth's custom access token hook (HTTP, Standard Webhooks
//     signatures): the claims it sent, plus the custom data under one
//     claim.
//   - Ory Hydra's token hook (oauth2.token_hook): the session's access-token
//     (and optionally ID-token) claims, plus the custom data.
//   - A generic read, GET /v1/users/{userId}/custom-data, for any issuer
//     that can make an HTTP call.
//
// Each call is bounded in time; when the data cannot be read the hook
// answers with its identity server's documented failure, so that the
// server refuses the token rather than issuing one without fresh data. It
// imports issuer and events, never the worker.
package bridge
