package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/connect"
	"github.com/extauthz/extauthz/internal/browsertest"
	"github.com/extauthz/extauthz/internal/connecttest"
	"github.com/extauthz/extauthz/internal/testop"
)

// TestEndToEndConnectFlow runs serve with listen.connect, a real OpenID
// Provider as both the primary authorization server (connect.login) and
// the provider op (endpoints by discovery, client_secret_post): a gRPC
// Check of a session without an op grant is denied with a connect link,
// which real Chromium follows through serve's connect endpoints, signing
// alice in and consenting at both; the next Check is allowed with the
// provider's access token, which is stored sealed and bound. The refusals
// (another user, a used ticket, a forged state, denied consent) are
// covered at the handler's level in connect/.
func TestEndToEndConnectFlow(t *testing.T) {
	alice := testop.User{Subject: "alice", Username: "alice", Password: "alice-password"}
	addr := freeTCPAddr(t)
	base := e2eConnectBase(addr)
	op := testop.Start(t, testop.Options{Users: []testop.User{alice}, Clients: []testop.Client{
		{ID: "login", Secret: "login-secret", RedirectURIs: []string{base + connect.PathLoginCallback}},
		{ID: "op-client", Secret: "op-secret", AuthMethod: testop.ClientSecretPost,
			RedirectURIs: []string{base + connect.PathProviderCallback}},
	}})
	e := startE2E(t, e2eOptions{connect: true, connectOP: op, connectAddr: addr})
	if e.connect == nil || e.connect.String() != addr {
		t.Fatalf("serve does not listen on listen.connect %s: %v", addr, e.connect)
	}

	headers := map[string]string{"authorization": "Bearer " + e.jwt(t, "s-connect", nil)}
	d := e.check(t, headers, "op").GetDeniedResponse()
	var body struct {
		ConnectURI string `json:"connect_uri"`
	}
	if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil || d.GetStatus().GetCode() != 401 {
		t.Fatalf("deny %d, body parsed: %v", d.GetStatus().GetCode(), err)
	}
	if !strings.HasPrefix(body.ConnectURI, base+connect.PathConnect+"?ticket=") {
		t.Fatalf("connect_uri is not a link under %s", base)
	}

	page := browsertest.New(t)
	page.Navigate(body.ConnectURI)
	connecttest.SignIn(page, "login", alice)
	page.Click(testop.AllowButton)
	connecttest.SignIn(page, "op-client", alice)
	page.Click(testop.AllowButton)
	page.WaitText("Your op account alice is now linked.")

	row, err := e.store.Get(t.Context(), "s-connect", "op")
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := e.raw.Get(t.Context(), "s-connect", "op")
	if err != nil {
		t.Fatal(err)
	}
	if row.Subject != "alice" || row.ClientID != "app" || row.UpstreamSubject != "alice" || sealed.AccessToken == row.AccessToken ||
		row.RefreshToken == "" {
		t.Errorf("stored: binding %q/%q, upstream %q, sealed %v, refresh token %v", row.Subject, row.ClientID, row.UpstreamSubject,
			sealed.AccessToken != row.AccessToken, row.RefreshToken != "")
	}
	resp := e.check(t, headers, "op")
	if resp.GetOkResponse() == nil {
		t.Fatalf("the Check after linking is not allowed: %d", resp.GetDeniedResponse().GetStatus().GetCode())
	}
	if got := respHeaders(resp)["x-op-token"]; got != "Bearer "+row.AccessToken {
		t.Errorf("the allowed Check does not carry the linked access token (header set: %v)", got != "")
	}

	// The same link again: its ticket is used.
	page.Navigate(body.ConnectURI)
	connecttest.SignIn(page, "login", alice)
	page.Click(testop.AllowButton)
	connecttest.SignIn(page, "op-client", alice)
	page.Click(testop.AllowButton)
	page.WaitText("This link has been used already")
	e.assertNoSecretsLogged(t, row.AccessToken, row.RefreshToken, strings.TrimPrefix(body.ConnectURI, base+connect.PathConnect+"?ticket="))
}
