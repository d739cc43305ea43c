package upstreamtoken

import "iter"

// Result is the outcome of Lookup: a valid credential for each provider that
// has one, and a failure for each requested provider that has none.
//
// The credentials are held without a map (most requests need one provider,
// and a Check should not allocate one): read them with Credential,
// Credentials and NumCredentials, and set them with SetCredential. The zero
// Result holds nothing. A Result holds its first credential inline and may
// share the others' storage with its copies: a copy that SetCredential
// changes is not to be read through the others.
type Result struct {
	// Failures holds, for each requested provider without a credential, why:
	// an error wrapping ErrSessionNotFound (the session has no row for it),
	// ErrNoRefreshToken, ErrRefreshFailed or ErrUpstreamUnavailable.
	Failures map[string]error

	first ProviderCredential   // the first credential set, when n > 0
	more  []ProviderCredential // the others, in the order they were set
	n     int
}

// ProviderCredential is one provider's credential in a Result.
type ProviderCredential struct {
	Provider string
	UpstreamCredential
}

// Credential returns provider's credential, and false when the Result has
// none for it.
func (r *Result) Credential(provider string) (UpstreamCredential, bool) {
	if r.n > 0 && r.first.Provider == provider {
		return r.first.UpstreamCredential, true
	}
	for i := range r.more {
		if r.more[i].Provider == provider {
			return r.more[i].UpstreamCredential, true
		}
	}
	return UpstreamCredential{}, false
}

// Credentials yields each provider and its credential, in the order they
// were first set.
func (r *Result) Credentials() iter.Seq2[string, UpstreamCredential] {
	return func(yield func(string, UpstreamCredential) bool) {
		if r.n == 0 || !yield(r.first.Provider, r.first.UpstreamCredential) {
			return
		}
		for _, c := range r.more {
			if !yield(c.Provider, c.UpstreamCredential) {
				return
			}
		}
	}
}

// NumCredentials returns how many providers have a credential.
func (r *Result) NumCredentials() int { return r.n }

// SetCredential sets provider's credential, replacing any it had. The first
// one set costs no allocation.
func (r *Result) SetCredential(provider string, c UpstreamCredential) {
	switch {
	case r.n == 0:
		r.first = ProviderCredential{provider, c}
	case r.first.Provider == provider:
		r.first.UpstreamCredential = c
		return
	default:
		for i := range r.more {
			if r.more[i].Provider == provider {
				r.more[i].UpstreamCredential = c
				return
			}
		}
		r.more = append(r.more, ProviderCredential{provider, c})
	}
	r.n++
}

func (r *Result) fail(provider string, err error) {
	if r.Failures == nil {
		r.Failures = make(map[string]error)
	}
	r.Failures[provider] = err
}
