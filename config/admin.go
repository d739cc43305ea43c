package config

import (
	"fmt"
	"net"

	"github.com/extauthz/extauthz/internal/setting"
	"github.com/extauthz/extauthz/internal/tlsreload"
	"github.com/extauthz/extauthz/jwtauth"
)

// DefaultAdminScope is the scope a caller's token needs on the session API
// unless admin.scope says otherwise.
const DefaultAdminScope = "extauthz:sessions"

// Admin configures the session API on listen.admin: how callers (the
// authorization server writing sessions) authenticate, and its TLS. It
// shares no trust with the Check listeners.
type Admin struct {
	// TLS, when its Cert is set, makes listen.admin serve TLS; with
	// ClientCA a client certificate is verified when presented (required
	// when bearer tokens are not accepted). Plaintext is allowed only on a
	// loopback address.
	TLS TLS `yaml:"tls"`
	// Audience, when set, accepts bearer tokens (client-credentials JWTs)
	// whose aud holds it, issued by Issuer and signed by a key of JWKSURL
	// (or JWKSFile). Issuer, JWKSURL and JWKSFile default to jwt's.
	Audience string `yaml:"audience"`
	Issuer   string `yaml:"issuer"`
	JWKSURL  string `yaml:"jwks_url"`
	JWKSFile string `yaml:"jwks_file"`
	// Scope must be among a token's scopes. Default DefaultAdminScope.
	Scope string `yaml:"scope"`
	// AllowedClients, when set, are the only client IDs (a token's
	// client_id, else azp) that may call.
	AllowedClients []string `yaml:"allowed_clients"`
	// ClientIdentities accepts a caller by its client certificate alone:
	// a subject alternative name (DNS name or URI such as a SPIFFE ID)
	// among them. It requires admin.tls.client_ca.
	ClientIdentities []string `yaml:"client_identities"`
}

// adminDefaults fills admin's defaults from jwt.
func (c *Config) adminDefaults() {
	a := &c.Admin
	if a.Issuer == "" {
		a.Issuer = c.JWT.Issuer
	}
	if a.JWKSURL == "" && a.JWKSFile == "" {
		a.JWKSURL, a.JWKSFile = c.JWT.JWKSURL, c.JWT.JWKSFile
	}
	if a.Scope == "" {
		a.Scope = DefaultAdminScope
	}
}

// AdminJWT is the verifier configuration of the session API's bearer
// tokens: they name no session.
func (c *Config) AdminJWT() jwtauth.Config {
	a := c.Admin
	return jwtauth.Config{Issuer: a.Issuer, Audiences: []string{a.Audience}, JWKSURL: a.JWKSURL, JWKSFile: a.JWKSFile,
		Leeway: c.JWT.Leeway.D(), WithoutSession: true}
}

// validateAdmin checks listen.admin and the admin section: a session API
// without any way to authenticate its callers is refused.
func (c *Config) validateAdmin() []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	a := c.Admin
	if c.Listen.Admin == "" {
		if a.Audience != "" || len(a.ClientIdentities) > 0 || len(a.AllowedClients) > 0 || a.TLS.Cert != "" || a.TLS.ClientCA != "" {
			add("admin is set but listen.admin is not: set listen.admin to serve the session API")
		}
		return p
	}
	host, _, err := net.SplitHostPort(c.Listen.Admin)
	switch {
	case err != nil:
		add("listen.admin must be host:port or :port")
	case sharesListener(c.Listen.Admin, c.Listen.GRPC, c.Listen.Metrics, c.Listen.HTTP):
		add("listen.admin must differ from listen.grpc, listen.metrics and listen.http")
	case a.TLS.Cert == "" && !setting.IsLoopback(host):
		add("listen.admin serves tokens: without admin.tls.cert it must be a loopback address (127.0.0.1:PORT)")
	}
	if a.Audience == "" && len(a.ClientIdentities) == 0 {
		add("listen.admin needs a way to authenticate callers: admin.audience (bearer tokens) or admin.client_identities (client certificates)")
	}
	if len(a.ClientIdentities) > 0 && a.TLS.ClientCA == "" {
		add("admin.client_identities requires admin.tls.client_ca: without it no client certificate is verified")
	}
	for i, id := range a.ClientIdentities {
		if err := tlsreload.CheckIdentity(id); err != nil {
			add("admin.client_identities[%d]: %v", i, err)
		}
	}
	for i, id := range a.AllowedClients {
		if id == "" {
			add("admin.allowed_clients[%d] is empty", i)
		}
	}
	if len(a.AllowedClients) > 0 && a.Audience == "" {
		add("admin.allowed_clients restricts bearer tokens: it needs admin.audience")
	}
	if a.Audience != "" {
		// The verifier owns issuer and key settings; config adds the
		// transport rule.
		p = append(p, setting.Under("admin", c.AdminJWT().Validate())...)
		if a.JWKSFile == "" {
			p = append(p, c.checkTransport("admin.jwks_url", a.JWKSURL)...)
		}
	}
	return append(p, a.TLS.validate("admin.tls")...)
}
