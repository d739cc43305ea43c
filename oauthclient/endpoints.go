package oauthclient

import (
	"context"
	"errors"
	"fmt"

	"github.com/extauthz/extauthz/discovery"
	"github.com/extauthz/extauthz/upstreamtoken"
)

// Endpoints are a provider's issuer and endpoints as the Client uses them:
// each set by hand, else taken from the issuer's discovery document, else
// empty.
type Endpoints struct {
	Issuer           string
	AuthorizationURL string
	TokenURL         string
	RevocationURL    string
}

// need says which endpoints a call needs.
type need int

const (
	needToken         need = 1 << iota // refresh, exchange, assertions with AudienceTokenEndpoint
	needRevocation                     // revocation (without it: ErrRevocationUnsupported)
	needAuthorization                  // the connect flow
	needAll           = needToken | needRevocation | needAuthorization
)

// lacks reports whether e lacks an endpoint of n.
func (e Endpoints) lacks(n need) bool {
	return (n&needToken != 0 && e.TokenURL == "") || (n&needRevocation != 0 && e.RevocationURL == "") ||
		(n&needAuthorization != 0 && e.AuthorizationURL == "")
}

// Endpoints returns the named provider's endpoints, looking up its
// discovery document when it has an issuer and leaves an endpoint empty.
// An unknown provider is ErrUnknownProvider; a failed discovery is an
// *Error wrapping upstreamtoken.ErrUpstreamUnavailable (together with
// upstreamtoken.ErrProviderMisconfigured when the document was refused or
// names no token endpoint).
func (c *Client) Endpoints(ctx context.Context, providerName string) (Endpoints, error) {
	p, ok := c.providers[providerName]
	if !ok {
		return Endpoints{}, fmt.Errorf("%w %q", ErrUnknownProvider, providerName)
	}
	return c.resolve(ctx, endpointsOp, providerName, p, needAll)
}

// endpointsOp words the failures of Endpoints.
var endpointsOp = &operation{name: "discovery"}

// resolve returns p's endpoints for op, which needs n. Discovery is
// consulted when p has an issuer and lacks an endpoint of n; the endpoints
// set by hand win over the document's. When n has needToken, the result has
// a TokenURL or the error says why not.
func (c *Client) resolve(ctx context.Context, op *operation, name string, p *provider, n need) (Endpoints, error) {
	ep := p.configured
	if ep.Issuer == "" || !ep.lacks(n) {
		return ep, nil
	}
	meta, err := c.discovery.Lookup(ctx, name)
	if err != nil {
		if errors.Is(err, discovery.ErrInvalidDocument) || errors.Is(err, discovery.ErrUnknownProvider) {
			e := &Error{Provider: name, Cause: "invalid discovery document"}
			return ep, e.unavailable("OIDC discovery failed for this "+op.name, upstreamtoken.ErrProviderMisconfigured)
		}
		e := (&Error{Provider: name}).failed(ctx, err)
		e.summary = "OIDC discovery failed for this " + op.name
		return ep, e
	}
	for _, f := range []struct {
		dst *string
		src string
	}{
		{&ep.AuthorizationURL, meta.AuthorizationEndpoint},
		{&ep.TokenURL, meta.TokenEndpoint},
		{&ep.RevocationURL, meta.RevocationEndpoint},
	} {
		if *f.dst == "" {
			*f.dst = f.src
		}
	}
	if n&needToken != 0 && ep.TokenURL == "" {
		e := &Error{Provider: name, Cause: "discovery document names no token_endpoint"}
		return ep, e.unavailable("no token endpoint for this "+op.name, upstreamtoken.ErrProviderMisconfigured)
	}
	return ep, nil
}

// signFailure is the *Error of a client assertion that could not be
// signed: our configuration (the key) is at fault.
func (c *Client) signFailure(op *operation, name string) *Error {
	e := &Error{Provider: name, Cause: errSign.Error()}
	return e.unavailable("cannot authenticate this "+op.name, upstreamtoken.ErrProviderMisconfigured)
}
