package testop_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/extauthz/extauthz/internal/testop"
)

var alice = testop.User{Subject: "alice-sub", Username: "alice", Password: "alice-password", Email: "alice@example.test", Name: "Alice"}

var formID = regexp.MustCompile(`name="id" value="([^"]+)"`)

// signInWithForms does what a person does in a browser, with net/http:
// it starts at the RP's /login, posts the provider's login form and
// answers the consent page with decision (allow or deny). It returns the
// final page's status and text.
func signInWithForms(t *testing.T, o *testop.OP, rp *relyingParty, username, password, decision string) (int, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	client := o.HTTPClient()
	client.Jar = jar
	get := func(resp *http.Response, err error) (*http.Response, string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(body)
	}
	idOf := func(page string) string {
		t.Helper()
		m := formID.FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("no form on the page:\n%s", page)
		}
		return m[1]
	}
	_, page := get(client.Get(rp.URL + "/login"))
	id := idOf(page)
	_, page = get(client.PostForm(o.Issuer+"/login", url.Values{"id": {id}, "username": {username}, "password": {password}}))
	if !strings.Contains(page, "Allow access?") {
		return http.StatusUnauthorized, page
	}
	resp, page := get(client.PostForm(o.Issuer+"/consent", url.Values{"id": {idOf(page)}, "decision": {decision}}))
	return resp.StatusCode, page
}

// Each way of client authentication gets a code exchanged, an ID token
// verified and a refresh; the provider sees the method the client uses.
func TestCodeFlowAndRefresh(t *testing.T) {
	for _, tc := range []struct {
		method testop.AuthMethod
		style  oauth2.AuthStyle
	}{
		{testop.ClientSecretBasic, oauth2.AuthStyleInHeader},
		{testop.ClientSecretPost, oauth2.AuthStyleInParams},
	} {
		t.Run(string(tc.method), func(t *testing.T) {
			rp := newRelyingParty(t)
			o := testop.Start(t, testop.Options{
				Users:   []testop.User{alice},
				Clients: []testop.Client{{ID: "web", Secret: "s3cret", AuthMethod: tc.method, RedirectURIs: []string{rp.URL + "/callback"}}},
			})
			rp.use(t, o, "web", "s3cret", tc.style)

			status, page := signInWithForms(t, o, rp, "alice", alice.Password, "allow")
			if status != http.StatusOK || !strings.Contains(page, "signed in as sub=alice-sub") {
				t.Fatalf("sign-in: %d %s", status, page)
			}
			first := rp.lastToken(t)

			ctx := oidc.ClientContext(context.Background(), o.HTTPClient())
			expired := &oauth2.Token{RefreshToken: first.RefreshToken, Expiry: time.Now().Add(-time.Minute)}
			refreshed, err := rp.config.TokenSource(ctx, expired).Token()
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if refreshed.AccessToken == "" || refreshed.RefreshToken == "" || refreshed.RefreshToken == first.RefreshToken {
				t.Errorf("refresh: access token %t, new refresh token %t, rotated %t",
					refreshed.AccessToken != "", refreshed.RefreshToken != "", refreshed.RefreshToken != first.RefreshToken)
			}
			// The rotated refresh token works no more.
			_, err = rp.config.TokenSource(ctx, expired).Token()
			if code := oauthError(err); code != "invalid_grant" {
				t.Errorf("reused refresh token: %v, want invalid_grant", err)
			}

			for _, r := range o.TokenRequests() {
				if r.ClientID != "web" || r.AuthMethod != tc.method {
					t.Errorf("token request %+v, want client web with %s", r, tc.method)
				}
			}
			if n := len(o.TokenRequests()); n != 3 {
				t.Errorf("%d token requests, want 3", n)
			}
		})
	}
}

func oauthError(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

// A client that authenticates with another method than its registered
// one is refused, as a strict provider does.
func TestWrongAuthMethodRefused(t *testing.T) {
	rp := newRelyingParty(t)
	o := testop.Start(t, testop.Options{
		Users:   []testop.User{alice},
		Clients: []testop.Client{{ID: "web", Secret: "s3cret", AuthMethod: testop.ClientSecretPost, RedirectURIs: []string{rp.URL + "/callback"}}},
	})
	rp.use(t, o, "web", "s3cret", oauth2.AuthStyleInHeader)
	status, page := signInWithForms(t, o, rp, "alice", alice.Password, "allow")
	if status != http.StatusForbidden || !strings.Contains(page, "invalid_client") {
		t.Errorf("basic for a client_secret_post client: %d %s", status, page)
	}
}

// Deny and a wrong password, without a browser.
func TestDenyAndWrongPassword(t *testing.T) {
	rp := newRelyingParty(t)
	o := testop.Start(t, testop.Options{
		Users:   []testop.User{alice},
		Clients: []testop.Client{{ID: "web", Secret: "s3cret", RedirectURIs: []string{rp.URL + "/callback"}}},
	})
	rp.use(t, o, "web", "s3cret", oauth2.AuthStyleInHeader)
	if status, page := signInWithForms(t, o, rp, "alice", alice.Password, "deny"); status != http.StatusForbidden || !strings.Contains(page, "error=access_denied") {
		t.Errorf("deny: %d %s", status, page)
	}
	if status, page := signInWithForms(t, o, rp, "alice", "nope", "allow"); status != http.StatusUnauthorized || !strings.Contains(page, "Wrong username or password.") {
		t.Errorf("wrong password: %d %s", status, page)
	}
}

// client_credentials gives a JWT access token, verifiable with the JWKS,
// whose subject is the client, with the scope and the extra claims.
func TestClientCredentialsJWT(t *testing.T) {
	o := testop.Start(t, testop.Options{
		Clients: []testop.Client{{ID: "svc", Secret: "svc-secret", AuthMethod: testop.ClientSecretPost, Audience: []string{"https://api.example.test"}}},
		AccessTokenClaims: func(subject, clientID string, scopes []string) map[string]any {
			return map[string]any{"tsid": "session-for-" + subject}
		},
	})
	ctx := oidc.ClientContext(context.Background(), o.HTTPClient())
	cc := clientcredentials.Config{ClientID: "svc", ClientSecret: "svc-secret", TokenURL: o.TokenURL(), Scopes: []string{"read"}, AuthStyle: oauth2.AuthStyleInParams}
	tok, err := cc.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	verifier := oidc.NewVerifier(o.Issuer, oidc.NewRemoteKeySet(ctx, o.JWKSURL()), &oidc.Config{ClientID: "https://api.example.test"})
	at, err := verifier.Verify(ctx, tok.AccessToken)
	if err != nil {
		t.Fatalf("access token: %v", err)
	}
	var claims struct {
		ClientID string `json:"client_id"`
		Scope    string `json:"scope"`
		TSID     string `json:"tsid"`
	}
	if err := at.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if at.Subject != "svc" || claims.ClientID != "svc" || claims.Scope != "read" || claims.TSID != "session-for-svc" {
		t.Errorf("claims: sub %q %+v", at.Subject, claims)
	}
}

// A revoked refresh token works no more.
func TestRevocation(t *testing.T) {
	rp := newRelyingParty(t)
	o := testop.Start(t, testop.Options{
		Users:   []testop.User{alice},
		Clients: []testop.Client{{ID: "web", Secret: "s3cret", RedirectURIs: []string{rp.URL + "/callback"}}},
	})
	rp.use(t, o, "web", "s3cret", oauth2.AuthStyleInHeader)
	if status, page := signInWithForms(t, o, rp, "alice", alice.Password, "allow"); status != http.StatusOK {
		t.Fatalf("sign-in: %d %s", status, page)
	}
	refresh := rp.lastToken(t).RefreshToken
	if n := o.RefreshTokenCount("alice-sub"); n != 1 {
		t.Fatalf("%d refresh tokens before revocation, want 1", n)
	}
	req, _ := http.NewRequest(http.MethodPost, o.RevocationURL(), strings.NewReader(url.Values{"token": {refresh}, "token_type_hint": {"refresh_token"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("web", "s3cret")
	resp, err := o.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revocation: %d", resp.StatusCode)
	}
	if n := o.RefreshTokenCount("alice-sub"); n != 0 {
		t.Errorf("%d refresh tokens after revocation, want 0", n)
	}
	ctx := oidc.ClientContext(context.Background(), o.HTTPClient())
	_, err = rp.config.TokenSource(ctx, &oauth2.Token{RefreshToken: refresh, Expiry: time.Now().Add(-time.Minute)}).Token()
	if oauthError(err) != "invalid_grant" {
		t.Errorf("revoked refresh token: %v, want invalid_grant", err)
	}
}

// A private_key_jwt client exchanges its code with a signed assertion
// (RFC 7523); an assertion's jti works once. Served over TLS, so the
// relying party trusts the provider's CA.
func TestPrivateKeyJWT(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rp := newRelyingParty(t)
	o := testop.Start(t, testop.Options{
		TLS:     true,
		Users:   []testop.User{alice},
		Clients: []testop.Client{{ID: "pkj", PublicKey: &key.PublicKey, KeyID: "k1", RedirectURIs: []string{rp.URL + "/callback"}}},
	})
	if !strings.HasPrefix(o.Issuer, "https://") {
		t.Fatalf("issuer %s with TLS", o.Issuer)
	}
	rp.use(t, o, "pkj", "", oauth2.AuthStyleInParams)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k1").WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	jti := "jti-1"
	rp.exchangeOpts = func() []oauth2.AuthCodeOption {
		now := time.Now()
		assertion, err := jwt.Signed(signer).Claims(jwt.Claims{
			Issuer: "pkj", Subject: "pkj", Audience: jwt.Audience{o.Issuer}, ID: jti,
			IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute)),
		}).Serialize()
		if err != nil {
			panic(err)
		}
		return []oauth2.AuthCodeOption{
			oauth2.SetAuthURLParam("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
			oauth2.SetAuthURLParam("client_assertion", assertion),
		}
	}
	if status, page := signInWithForms(t, o, rp, "alice", alice.Password, "allow"); status != http.StatusOK || !strings.Contains(page, "signed in as sub=alice-sub") {
		t.Fatalf("sign-in with private_key_jwt: %d %s", status, page)
	}
	// The same jti again.
	if status, page := signInWithForms(t, o, rp, "alice", alice.Password, "allow"); status != http.StatusForbidden || !strings.Contains(page, "invalid_client") {
		t.Errorf("reused assertion: %d %s", status, page)
	}
	if got := o.TokenRequests()[0].AuthMethod; got != testop.PrivateKeyJWT {
		t.Errorf("method %s, want private_key_jwt", got)
	}
}
