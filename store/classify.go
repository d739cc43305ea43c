package store

import (
	"context"
	"errors"
)

// Outcome is the class of a store operation's result: the one name that
// metrics, traces and logs give it.
type Outcome string

// The outcomes, from Classify.
const (
	// OutcomeOK: the operation succeeded.
	OutcomeOK Outcome = "ok"
	// OutcomeNotFound: the error wraps ErrNotFound (and not ErrLeaseLost).
	OutcomeNotFound Outcome = "not_found"
	// OutcomeLeaseLost: the error wraps ErrLeaseLost, whether or not it
	// also wraps ErrNotFound.
	OutcomeLeaseLost Outcome = "lease_lost"
	// OutcomeConflict: the error wraps ErrConflict.
	OutcomeConflict Outcome = "conflict"
	// OutcomeInvalid: the error wraps ErrInvalid.
	OutcomeInvalid Outcome = "invalid"
	// OutcomeUnreadable: the error wraps ErrUnreadable.
	OutcomeUnreadable Outcome = "unreadable"
	// OutcomeUnavailable: the error wraps ErrUnavailable, context.Canceled
	// or context.DeadlineExceeded.
	OutcomeUnavailable Outcome = "unavailable"
	// OutcomeError: any other error.
	OutcomeError Outcome = "error"
)

// Classify returns the Outcome of an operation that returned err. An error
// wrapping several sentinels takes the first class in the order of the
// constants above.
func Classify(err error) Outcome {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, ErrLeaseLost):
		return OutcomeLeaseLost
	case errors.Is(err, ErrNotFound):
		return OutcomeNotFound
	case errors.Is(err, ErrConflict):
		return OutcomeConflict
	case errors.Is(err, ErrInvalid):
		return OutcomeInvalid
	case errors.Is(err, ErrUnreadable):
		return OutcomeUnreadable
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return OutcomeUnavailable
	default:
		return OutcomeError
	}
}

// Failed reports whether o is a failure rather than an answer that callers
// expect in normal operation: every outcome is a failure but ok, not_found,
// lease_lost and conflict.
func (o Outcome) Failed() bool {
	switch o {
	case OutcomeOK, OutcomeNotFound, OutcomeLeaseLost, OutcomeConflict:
		return false
	}
	return true
}

// StoreUp reports what o says of the store itself: up is true when the
// store answered (every outcome that is not a failure, and invalid: the
// store refused the values, it did not fail to answer), false when it could
// not be reached (unavailable). known is false for the other outcomes
// (unreadable, error), which say nothing either way.
func (o Outcome) StoreUp() (up, known bool) {
	switch {
	case !o.Failed() || o == OutcomeInvalid:
		return true, true
	case o == OutcomeUnavailable:
		return false, true
	}
	return false, false
}
