package testop

import (
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// client is a registered Client, as op.Client.
type client struct {
	reg             Client
	idTokenLifetime time.Duration
}

func newClient(c Client, idTokenLifetime time.Duration) (*client, error) {
	if c.ID == "" {
		return nil, fmt.Errorf("a client has no ID")
	}
	if c.AuthMethod == "" {
		switch {
		case c.Secret != "":
			c.AuthMethod = ClientSecretBasic
		case c.PublicKey != nil:
			c.AuthMethod = PrivateKeyJWT
		default:
			c.AuthMethod = None
		}
	}
	switch c.AuthMethod {
	case ClientSecretBasic, ClientSecretPost:
		if c.Secret == "" {
			return nil, fmt.Errorf("client %s: %s needs a Secret", c.ID, c.AuthMethod)
		}
	case PrivateKeyJWT:
		if c.PublicKey == nil {
			return nil, fmt.Errorf("client %s: private_key_jwt needs a PublicKey", c.ID)
		}
	case None:
	default:
		return nil, fmt.Errorf("client %s: unknown AuthMethod %q", c.ID, c.AuthMethod)
	}
	return &client{reg: c, idTokenLifetime: idTokenLifetime}, nil
}

// audience is the aud of the tokens issued to the client.
func (c *client) audience() []string {
	return append([]string{c.reg.ID}, c.reg.Audience...)
}

func (c *client) GetID() string                    { return c.reg.ID }
func (c *client) RedirectURIs() []string           { return c.reg.RedirectURIs }
func (c *client) PostLogoutRedirectURIs() []string { return nil }

// ApplicationType is web for a client that authenticates, native for a
// public one; both may use http redirect URIs (ValidateAuthReqRedirectURI).
func (c *client) ApplicationType() op.ApplicationType {
	if c.reg.AuthMethod == None {
		return op.ApplicationTypeNative
	}
	return op.ApplicationTypeWeb
}

func (c *client) AuthMethod() oidc.AuthMethod {
	switch c.reg.AuthMethod {
	case ClientSecretBasic:
		return oidc.AuthMethodBasic
	case ClientSecretPost:
		return oidc.AuthMethodPost
	case PrivateKeyJWT:
		return oidc.AuthMethodPrivateKeyJWT
	default:
		return oidc.AuthMethodNone
	}
}

func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}

func (c *client) GrantTypes() []oidc.GrantType {
	grants := []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
	if c.reg.Secret != "" {
		grants = append(grants, oidc.GrantTypeClientCredentials)
	}
	return grants
}

// LoginURL is where the authorization endpoint sends the browser: the
// login form, relative to the issuer.
func (c *client) LoginURL(authRequestID string) string {
	return loginPath + "?id=" + url.QueryEscape(authRequestID)
}

func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }
func (c *client) IDTokenLifetime() time.Duration      { return c.idTokenLifetime }
func (c *client) DevMode() bool                       { return false }

func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return slices.Clone[[]string]
}

func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return slices.Clone[[]string]
}

// IsScopeAllowed allows any scope beyond the standard ones: a test asks for
// what it needs.
func (c *client) IsScopeAllowed(string) bool { return true }

// IDTokenUserinfoClaimsAssertion puts the profile and email claims into the
// ID token, so a relying party can show who signed in without userinfo.
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }
