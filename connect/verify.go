package connect

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/extauthz/extauthz/upstreamtoken"
)

// errIDToken wraps every refusal of an ID token by verify.
var errIDToken = errors.New("connect: ID token refused")

// discover returns the OpenID Provider at issuer, from its discovery
// document, fetched once and kept; a failure is not kept, so the next
// request tries again. Its errors wrap upstreamtoken.ErrUpstreamUnavailable.
func (h *Handler) discover(ctx context.Context, issuer string) (*oidc.Provider, error) {
	h.mu.Lock()
	p := h.providers[issuer]
	h.mu.Unlock()
	if p != nil {
		return p, nil
	}
	// Concurrent first requests may each fetch the document: harmless.
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, h.opts.HTTPClient), issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: discovery at %s: %w", upstreamtoken.ErrUpstreamUnavailable, issuer, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if kept := h.providers[issuer]; kept != nil {
		return kept, nil
	}
	h.providers[issuer] = p
	return p, nil
}

// verify checks an ID token from issuer for clientID: signature by one of
// the issuer's keys (an asymmetric algorithm the issuer announces), iss,
// aud, exp (by the handler's clock), and nonce, which must equal the one
// the flow sent. A refusal wraps errIDToken; an unreachable issuer wraps
// upstreamtoken.ErrUpstreamUnavailable. No error carries the token.
func (h *Handler) verify(ctx context.Context, issuer, clientID, raw, nonce string) (*oidc.IDToken, error) {
	if raw == "" {
		return nil, fmt.Errorf("%w: the token response carries no ID token", errIDToken)
	}
	p, err := h.discover(ctx, issuer)
	if err != nil {
		return nil, err
	}
	id, err := p.VerifierContext(oidc.ClientContext(ctx, h.opts.HTTPClient), &oidc.Config{ClientID: clientID, Now: h.opts.Now}).
		Verify(oidc.ClientContext(ctx, h.opts.HTTPClient), raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errIDToken, err)
	}
	if id.Subject == "" {
		return nil, fmt.Errorf("%w: no sub", errIDToken)
	}
	if nonce == "" || subtle.ConstantTimeCompare([]byte(id.Nonce), []byte(nonce)) != 1 {
		return nil, fmt.Errorf("%w: the nonce is not the one sent", errIDToken)
	}
	return id, nil
}
