package authz

// Results of a decision (Response.Result): the result label of the decision
// metric.
const (
	// ResultOK: the request is allowed.
	ResultOK = "ok"
	// ResultDenied: the client's credentials do not pass (401, 403); the
	// client can act on the deny.
	ResultDenied = "denied"
	// ResultError: the service could not decide (5xx): something it depends
	// on failed, or its configuration is wrong.
	ResultError = "error"
)

// Reasons of a decision (Response.Reason). These words, and no others, are
// the "reason" of the decision's log line and the reason label of the
// decision metric. They are stable: operators alert on them. A refresh
// behind a decision has its own outcome (upstreamtoken.RefreshOutcomes):
// OutcomeRefused ends in ReasonRefreshFailed, OutcomeMisconfigured in
// ReasonProviderMisconfigured and the other transient outcomes in
// ReasonProviderUnavailable.
const (
	// ReasonOK: allowed (ResultOK).
	ReasonOK = "ok"

	// Denies the client can act on (ResultDenied).

	// ReasonNoToken: no bearer token.
	ReasonNoToken = "no_token"
	// ReasonInvalidToken: the JWT was refused.
	ReasonInvalidToken = "invalid_token"
	// ReasonSessionNotFound: the session is unknown or expired (the deny
	// then says re-authentication is required), or lacks a
	// provider the route needs.
	ReasonSessionNotFound = "session_not_found"
	// ReasonBindingMismatch: the session belongs to another subject or
	// client.
	ReasonBindingMismatch = "binding_mismatch"
	// ReasonNoRefreshToken: the upstream token expired and cannot be
	// refreshed.
	ReasonNoRefreshToken = "no_refresh_token"
	// ReasonRefreshFailed: the provider refused the session's grant for
	// good: re-authentication required.
	ReasonRefreshFailed = "refresh_failed"
	// ReasonInsufficientScope: the JWT lacks a scope the route requires
	// (403).
	ReasonInsufficientScope = "insufficient_scope"

	// Transient failures and faults of the service (ResultError).

	// ReasonKeysUnavailable: the JWKS could not be fetched.
	ReasonKeysUnavailable = "keys_unavailable"
	// ReasonStoreUnavailable: the token store cannot be read, or a row
	// cannot be decrypted.
	ReasonStoreUnavailable = "store_unavailable"
	// ReasonProviderUnavailable: a provider's 5xx, 429, time-out or network
	// error, an error code nobody knows, or the pause after one.
	ReasonProviderUnavailable = "provider_unavailable"
	// ReasonProviderMisconfigured: a provider rejected our client
	// credentials.
	ReasonProviderMisconfigured = "provider_misconfigured"
	// ReasonRouteMisconfigured: the route's policy is refused (500).
	ReasonRouteMisconfigured = "route_misconfigured"
	// ReasonUnsafeToken: an upstream token cannot be put in a header (502).
	ReasonUnsafeToken = "unsafe_token"
)

// Reasons lists every reason by the result it comes with.
var Reasons = map[string][]string{
	ResultOK: {ReasonOK},
	ResultDenied: {ReasonNoToken, ReasonInvalidToken, ReasonSessionNotFound, ReasonBindingMismatch,
		ReasonNoRefreshToken, ReasonRefreshFailed, ReasonInsufficientScope},
	ResultError: {ReasonKeysUnavailable, ReasonStoreUnavailable, ReasonProviderUnavailable,
		ReasonProviderMisconfigured, ReasonRouteMisconfigured, ReasonUnsafeToken},
}
