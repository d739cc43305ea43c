package cli

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/connect"
	"github.com/extauthz/extauthz/internal/browsertest"
	"github.com/extauthz/extauthz/internal/connecttest"
	"github.com/extauthz/extauthz/internal/testop"
)

// TestEndToEndConnectFlow: a gRPC Check of a session without a gh grant is
// denied with a connect link; its ticket, followed in real Chromium through
// the connect flow (connect.Handler, started by the test: serve does not
// serve listen.connect yet) with a real OpenID Provider as both the
// primary authorization server and the provider gh, signs alice in, links
// her account, and the next Check is allowed with the provider's access
// token, which is stored sealed.
func TestEndToEndConnectFlow(t *testing.T) {
	e := startE2E(t, e2eOptions{connect: true})
	alice := testop.User{Subject: "alice", Username: "alice", Password: "alice-password"}

	ln, base := connecttest.Listen(t)
	op := testop.Start(t, testop.Options{Users: []testop.User{alice}, Clients: []testop.Client{
		{ID: "login", Secret: "login-secret", RedirectURIs: []string{base + connect.PathLoginCallback}},
		{ID: "gh-client", Secret: "gh-secret", AuthMethod: testop.ClientSecretPost,
			RedirectURIs: []string{base + connect.PathProviderCallback}},
	}})
	h, err := connect.NewHandler(connect.Options{
		PublicURL: base,
		Tickets:   connect.NewTickets(e.keys, e.raw, 0),
		Keys:      e.keys,
		Login:     connect.Login{Issuer: op.Issuer, ClientID: "login", ClientSecret: "login-secret"},
		Providers: map[string]connect.Provider{"gh": {AuthorizationURL: op.AuthorizationURL(), ClientID: "gh-client",
			Issuer: op.Issuer, Scopes: []string{"openid", "offline_access"}}},
		Exchanger: &connecttest.Exchanger{HTTPClient: op.HTTPClient(), TokenURL: op.TokenURL(),
			ClientID: "gh-client", ClientSecret: "gh-secret"},
		Sessions:   e.store,
		HTTPClient: op.HTTPClient(),
	})
	if err != nil {
		t.Fatal(err)
	}
	connecttest.Serve(t, ln, h)

	headers := map[string]string{"authorization": "Bearer " + e.jwt(t, "s-connect", nil)}
	d := e.check(t, headers, "").GetDeniedResponse()
	var body struct {
		ConnectURI string `json:"connect_uri"`
	}
	if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil || d.GetStatus().GetCode() != 401 {
		t.Fatalf("deny %d, body parsed: %v", d.GetStatus().GetCode(), err)
	}
	link, err := url.Parse(body.ConnectURI)
	if err != nil || !strings.HasPrefix(body.ConnectURI, e2eConnectURL+connect.PathConnect+"?") {
		t.Fatalf("connect_uri is not a link under %s", e2eConnectURL)
	}

	// The deny's link is under the configured https public URL; the test
	// serves the flow on loopback http, with the same ticket.
	page := browsertest.New(t)
	page.Navigate(base + connect.PathConnect + "?" + link.RawQuery)
	connecttest.SignIn(page, "login", alice)
	page.Click(testop.AllowButton)
	connecttest.SignIn(page, "gh-client", alice)
	page.Click(testop.AllowButton)
	page.WaitText("Your gh account alice is now linked.")

	row, err := e.store.Get(t.Context(), "s-connect", "gh")
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := e.raw.Get(t.Context(), "s-connect", "gh")
	if err != nil {
		t.Fatal(err)
	}
	if row.Subject != "alice" || row.ClientID != "app" || row.UpstreamSubject != "alice" || sealed.AccessToken == row.AccessToken {
		t.Errorf("stored: binding %q/%q, upstream %q, sealed %v", row.Subject, row.ClientID, row.UpstreamSubject,
			sealed.AccessToken != row.AccessToken)
	}
	resp := e.check(t, headers, "")
	if resp.GetOkResponse() == nil {
		t.Fatalf("the Check after linking is not allowed: %d", resp.GetDeniedResponse().GetStatus().GetCode())
	}
	if got := respHeaders(resp)["authorization"]; got != "Bearer "+row.AccessToken {
		t.Errorf("the allowed Check does not carry the linked access token (header set: %v)", got != "")
	}
	e.assertNoSecretsLogged(t, row.AccessToken, row.RefreshToken, link.Query().Get("ticket"))
}
