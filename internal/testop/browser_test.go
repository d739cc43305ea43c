package testop_test

import (
	"net/url"
	"os"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/extauthz/extauthz/internal/browsertest"
	"github.com/extauthz/extauthz/internal/testop"
)

// One Chromium for the whole test binary.
func TestMain(m *testing.M) { os.Exit(browsertest.Main(m)) }

// startWithRP starts a provider with the user alice and a confidential
// client (client_secret_basic), and a relying party for that client.
func startWithRP(t *testing.T) (*testop.OP, *relyingParty) {
	t.Helper()
	rp := newRelyingParty(t)
	o := testop.Start(t, testop.Options{
		Users:   []testop.User{alice},
		Clients: []testop.Client{{ID: "web", Secret: "web-secret", RedirectURIs: []string{rp.URL + "/callback"}}},
	})
	rp.use(t, o, "web", "web-secret", oauth2.AuthStyleInHeader)
	return o, rp
}

// A person signs in at the provider's HTML form in a real browser, allows
// the request, and lands on the relying party's page, which shows the sub
// of the verified ID token.
func TestBrowserSignInAndAllow(t *testing.T) {
	_, rp := startWithRP(t)
	page := browsertest.New(t)

	page.Navigate(rp.URL + "/login")
	page.WaitText("to continue to web")
	page.Fill(testop.UsernameField, "alice")
	page.Fill(testop.PasswordField, "wrong")
	page.Click(testop.SignInButton)
	page.WaitText("Wrong username or password.")

	page.Fill(testop.UsernameField, "alice")
	page.Fill(testop.PasswordField, alice.Password)
	page.Click(testop.SignInButton)
	page.WaitText("web asks for access to the account alice")
	page.Click(testop.AllowButton)
	page.WaitText("signed in as sub=" + alice.Subject)

	if got := page.URL(); !strings.HasPrefix(got, rp.URL+"/callback?") {
		t.Errorf("ended at %s, want the RP's callback", got)
	}
	if !strings.Contains(page.Text(), "email="+alice.Email) {
		t.Errorf("the ID token did not carry the email: %q", page.Text())
	}
	if tok := rp.lastToken(t); tok.RefreshToken == "" {
		t.Error("no refresh token for offline_access")
	}
}

// Deny on the consent page sends the browser back to the relying party
// with error=access_denied and the request's state.
func TestBrowserDeny(t *testing.T) {
	_, rp := startWithRP(t)
	page := browsertest.New(t)

	page.Navigate(rp.URL + "/login")
	page.Fill(testop.UsernameField, "alice")
	page.Fill(testop.PasswordField, alice.Password)
	page.Click(testop.SignInButton)
	page.WaitText("Allow access?")
	page.Click(testop.DenyButton)
	page.WaitText("sign-in failed: error=access_denied")

	u, err := url.Parse(page.URL())
	if err != nil {
		t.Fatal(err)
	}
	if q := u.Query(); q.Get("error") != "access_denied" || q.Get("state") == "" {
		t.Errorf("callback query %q: want error=access_denied and a state", u.RawQuery)
	}
}
