package cli

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// demoCodeTTL is how long a code of the demo authorization endpoint may be
// redeemed.
const demoCodeTTL = time.Minute

// demoAuthorizer is the demo's authorization endpoint, for development
// only: an OpenID Provider whose one user (the demo subject) is always
// signed in, with a one-button consent page. Its codes (PKCE S256
// required) are redeemed at the demo token endpoint for an access token, a
// refresh token and an ID token signed with the demo key. It serves both
// the connect flow's sign-in (connect.login) and its provider.
type demoAuthorizer struct {
	d *demoIdP
	// issuer is the URL the demo is reached at (discovery, the ID tokens'
	// iss).
	issuer string
	// redirectPrefix, when set, is what every redirect URI must start
	// with.
	redirectPrefix string

	mu    sync.Mutex
	codes map[string]demoCode
}

// demoCode is what an authorization code was issued for.
type demoCode struct {
	clientID, redirectURI, challenge, nonce string
	expires                                 time.Time
}

// register adds the authorization endpoints to mux: the discovery
// document, GET and POST /authorize; the token endpoint calls exchange.
func (a *demoAuthorizer) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": a.issuer, "authorization_endpoint": a.issuer + "/authorize", "token_endpoint": a.issuer + "/token",
			"jwks_uri": a.issuer + "/jwks.json", "response_types_supported": []string{"code"},
			"subject_types_supported": []string{"public"}, "id_token_signing_alg_values_supported": []string{string(jose.ES256)},
			"code_challenge_methods_supported": []string{"S256"},
		})
	})
	mux.HandleFunc("GET /authorize", a.consentPage)
	mux.HandleFunc("POST /authorize", a.decide)
}

// consentTemplate is the one-button consent page. The form posts back to
// the same URL (the request's parameters stay in its query).
var consentTemplate = template.Must(template.New("consent").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Development sign-in</title></head>
<body><h1>Development sign-in</h1>
<p>You are signed in as <strong>{{.Subject}}</strong> (development identity provider of extauthz dev; not for production).</p>
<p><strong>{{.ClientID}}</strong> asks for access to your account{{if .Scope}} (scope: {{.Scope}}){{end}}.</p>
<form method="post" action="{{.Action}}">
<button type="submit" name="decision" value="allow" id="allow">Allow</button>
<button type="submit" name="decision" value="deny" id="deny">Deny</button>
</form></body></html>
`))

// authRequest checks an authorization request: a code request of a known
// shape with PKCE S256 and an allowed redirect URI. It answers the error
// itself (on the page: nothing is sent to an unchecked redirect URI) and
// returns false.
func (a *demoAuthorizer) authRequest(w http.ResponseWriter, q url.Values) bool {
	redirect, err := url.Parse(q.Get("redirect_uri"))
	switch {
	case err != nil || (redirect.Scheme != "http" && redirect.Scheme != "https") || redirect.Host == "" ||
		!strings.HasPrefix(q.Get("redirect_uri"), a.redirectPrefix):
		http.Error(w, "redirect_uri missing or not allowed", http.StatusBadRequest)
	case q.Get("response_type") != "code" || q.Get("client_id") == "":
		http.Error(w, "response_type=code and client_id are required", http.StatusBadRequest)
	case q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "":
		http.Error(w, "PKCE with S256 is required", http.StatusBadRequest)
	default:
		return true
	}
	return false
}

// consentPage serves GET /authorize: the consent page.
func (a *demoAuthorizer) consentPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !a.authRequest(w, q) {
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	_ = consentTemplate.Execute(w, map[string]string{"Subject": a.d.subject, "ClientID": q.Get("client_id"),
		"Scope": q.Get("scope"), "Action": "/authorize?" + r.URL.RawQuery})
}

// decide serves POST /authorize: the answer of the consent page, sent to
// the redirect URI as a code, or as error=access_denied.
func (a *demoAuthorizer) decide(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !a.authRequest(w, q) {
		return
	}
	target, _ := url.Parse(q.Get("redirect_uri"))
	answer := target.Query()
	if state := q.Get("state"); state != "" {
		answer.Set("state", state)
	}
	if r.PostFormValue("decision") == "allow" {
		code := randomHex(16)
		a.mu.Lock()
		if a.codes == nil {
			a.codes = map[string]demoCode{}
		}
		a.codes[code] = demoCode{clientID: q.Get("client_id"), redirectURI: q.Get("redirect_uri"),
			challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), expires: time.Now().Add(demoCodeTTL)}
		a.mu.Unlock()
		answer.Set("code", code)
	} else {
		answer.Set("error", "access_denied")
	}
	target.RawQuery = answer.Encode()
	http.Redirect(w, r, target.String(), http.StatusSeeOther)
}

// exchange answers an authorization_code grant at the token endpoint: the
// code once, for the client it was issued to, the same redirect URI and a
// verifier matching its challenge.
func (a *demoAuthorizer) exchange(w http.ResponseWriter, r *http.Request) {
	clientID, _, ok := r.BasicAuth()
	if !ok {
		clientID = r.PostFormValue("client_id")
	}
	code := r.PostFormValue("code")
	a.mu.Lock()
	c, found := a.codes[code]
	delete(a.codes, code)
	a.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
	if !found || time.Now().After(c.expires) || c.clientID != clientID || c.redirectURI != r.PostFormValue("redirect_uri") ||
		subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(c.challenge)) != 1 {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
		return
	}
	idToken, err := a.idToken(clientID, c.nonce)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"error":"server_error"}`))
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token":  "upstream-demo-token-" + randomHex(6),
		"refresh_token": "upstream-demo-refresh-" + randomHex(6),
		"id_token":      idToken,
		"token_type":    "Bearer",
		"expires_in":    int(a.d.accessTTL / time.Second),
	})
	a.d.log.Info("demo token endpoint: redeemed an authorization code")
}

// idToken signs the demo subject's ID token for clientID.
func (a *demoAuthorizer) idToken(clientID, nonce string) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: a.d.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", devKeyID(a.d.key)))
	if err != nil {
		return "", err
	}
	now := time.Now()
	claims := map[string]any{"iss": a.issuer, "aud": clientID, "sub": a.d.subject, "preferred_username": a.d.subject,
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}
