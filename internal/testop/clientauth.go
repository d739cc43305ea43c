package testop

import (
	"encoding/json"
	"net/http"
	"net/url"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/zitadel/oidc/v3/pkg/oidc"
)

// checkClientAuth wraps the library's handler: at the token and revocation
// endpoints it records the request (TokenRequests) and refuses a client
// that authenticates with another method than its registered one, and a
// private_key_jwt assertion without a jti or with one already used. The
// library then authenticates the client as usual.
func (o *OP) checkClientAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || (r.URL.Path != "/oauth/token" && r.URL.Path != "/revoke") {
			next.ServeHTTP(w, r)
			return
		}
		if err := r.ParseForm(); err != nil {
			next.ServeHTTP(w, r) // the library answers invalid_request
			return
		}
		method, clientID, assertion := usedClientAuth(r)
		if r.URL.Path == "/oauth/token" {
			o.mu.Lock()
			o.requests = append(o.requests, TokenRequest{GrantType: r.PostForm.Get("grant_type"), ClientID: clientID, AuthMethod: method})
			o.mu.Unlock()
		}
		c, ok := o.store.clients[clientID]
		if !ok {
			next.ServeHTTP(w, r) // the library answers invalid_client
			return
		}
		if c.reg.AuthMethod != method {
			invalidClient(w, "client authentication "+string(method)+" is not the registered "+string(c.reg.AuthMethod))
			return
		}
		if method == PrivateKeyJWT {
			jti := unverifiedClaims(assertion).ID
			if jti == "" {
				invalidClient(w, "the client assertion has no jti")
				return
			}
			if !o.store.useAssertionJTI(clientID, jti) {
				invalidClient(w, "the client assertion's jti was used before")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// usedClientAuth tells how the request authenticates its client, and which
// client it names (for private_key_jwt, the assertion's issuer, not yet
// verified).
func usedClientAuth(r *http.Request) (method AuthMethod, clientID, assertion string) {
	if user, _, ok := r.BasicAuth(); ok {
		id, err := url.QueryUnescape(user)
		if err != nil {
			id = user
		}
		return ClientSecretBasic, id, ""
	}
	if r.PostForm.Get("client_assertion_type") == oidc.ClientAssertionTypeJWTAssertion {
		assertion = r.PostForm.Get("client_assertion")
		return PrivateKeyJWT, unverifiedClaims(assertion).Issuer, assertion
	}
	if r.PostForm.Get("client_secret") != "" {
		return ClientSecretPost, r.PostForm.Get("client_id"), ""
	}
	return None, r.PostForm.Get("client_id"), ""
}

// unverifiedClaims reads a JWT's claims without checking its signature
// (the library checks it afterwards); a malformed JWT gives empty claims.
func unverifiedClaims(token string) jwt.Claims {
	var claims jwt.Claims
	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256})
	if err == nil {
		_ = parsed.UnsafeClaimsWithoutVerification(&claims)
	}
	return claims
}

// invalidClient answers 401 invalid_client (RFC 6749, section 5.2).
func invalidClient(w http.ResponseWriter, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client", "error_description": description})
}
