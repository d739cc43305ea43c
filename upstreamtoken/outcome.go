package upstreamtoken

import "errors"

// Refresh outcomes: what became of one refresh that an InProcessService
// coordinated. These words, and no others, are the "outcome" of the service's
// refresh log lines, the outcome WithRefreshObserver reports (the outcome
// label of the refresh metrics) and the outcome of a trace's refresh span
// (which sees only the provider's answer: OutcomeOK, OutcomeRefused,
// OutcomeUnavailable, OutcomeMisconfigured or OutcomeUnknownRefusal, as
// RefreshOutcome names it). The words are stable: operators alert on them.
const (
	// OutcomeOK: redeemed at the provider and stored.
	OutcomeOK = "ok"
	// OutcomeSkipped: another process had already refreshed the row, whose
	// token is served without redeeming anything.
	OutcomeSkipped = "skipped"
	// OutcomeRefused: the provider refused the refresh token for good, or
	// returned an ID token that failed verification; the row is marked for
	// re-authentication (ErrRefreshFailed).
	OutcomeRefused = "refused"
	// OutcomeUnavailable: the provider failed transiently (5xx, 429,
	// time-out, network); refreshes at it pause (ErrUpstreamUnavailable).
	OutcomeUnavailable = "unavailable"
	// OutcomeMisconfigured: the provider rejected our client credentials
	// (ErrProviderMisconfigured); refreshes at it pause.
	OutcomeMisconfigured = "misconfigured"
	// OutcomeUnknownRefusal: the provider refused this session's refresh
	// with an error code nobody knows (ErrUnknownRefusal); this session
	// alone pauses its refreshes there.
	OutcomeUnknownRefusal = "unknown_refusal"
	// OutcomeBackingOff: not attempted, the provider (or this session
	// there) failed recently.
	OutcomeBackingOff = "backing_off"
	// OutcomeSuperseded: the row changed or was deleted during the refresh
	// (or before its deferred write), and the new tokens were discarded.
	OutcomeSuperseded = "superseded"
	// OutcomeDeferred: the provider answered but the store did not take the
	// new tokens in time: they are kept in memory, served, and written as
	// soon as the store answers.
	OutcomeDeferred = "deferred"
	// OutcomeNotStored: the provider answered but the store failed to keep
	// the new tokens (or shutdown gave up a deferred write): they are lost.
	OutcomeNotStored = "not_stored"
)

// RefreshOutcomes lists every refresh outcome.
var RefreshOutcomes = []string{
	OutcomeOK, OutcomeSkipped, OutcomeRefused, OutcomeUnavailable, OutcomeMisconfigured,
	OutcomeUnknownRefusal, OutcomeBackingOff, OutcomeSuperseded, OutcomeDeferred, OutcomeNotStored,
}

// RefreshOutcome names the outcome of a Refresher's answer err by who is to
// blame: OutcomeOK for nil; OutcomeRefused for ErrRefreshFailed (the
// session's grant); OutcomeMisconfigured for ErrProviderMisconfigured (our
// client registration); OutcomeUnknownRefusal for ErrUnknownRefusal; and
// OutcomeUnavailable for any other error, which is taken as transient.
func RefreshOutcome(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, ErrRefreshFailed):
		return OutcomeRefused
	case errors.Is(err, ErrProviderMisconfigured):
		return OutcomeMisconfigured
	case errors.Is(err, ErrUnknownRefusal):
		return OutcomeUnknownRefusal
	default:
		return OutcomeUnavailable
	}
}
