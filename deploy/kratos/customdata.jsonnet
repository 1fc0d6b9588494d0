// The body Ory Kratos's web_hook action sends to customdata-bridge, for
// both hooks: after registration (POST /ingest/kratos/registration, a
// CREATE) and after login (POST /ingest/kratos/login, a LOGIN). See the
// README, "Ory Kratos", for the selfservice.flows.*.after config.
//
// flow_id makes Kratos's retries idempotent (the bridge's event id is
// kratos:<registration|login>:<flow_id>); method becomes the provider
// (kratos-password, kratos-oidc, …); time is when the user authenticated
// (after login) or was created (after registration).
function(ctx) {
  identity_id: ctx.identity.id,
  flow_id: ctx.flow.id,
  method: if std.objectHas(ctx.flow, 'active') then ctx.flow.active else null,
  time: if std.objectHas(ctx, 'session') && ctx.session != null
    then ctx.session.authenticated_at
    else ctx.identity.created_at,
}
