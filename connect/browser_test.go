package connect_test

import (
	"context"
	"testing"

	"github.com/extauthz/extauthz/connect"
	"github.com/extauthz/extauthz/internal/browsertest"
	"github.com/extauthz/extauthz/internal/connecttest"
	"github.com/extauthz/extauthz/internal/testop"
)

// toProviderConsent follows link as alice through the sign-in at the
// authorization server, allows, and signs in at the provider, up to its
// consent page.
func toProviderConsent(page *browsertest.Page, link string) {
	page.Navigate(link)
	connecttest.SignIn(page, loginClient, alice)
	page.Click(testop.AllowButton)
	connecttest.SignIn(page, providerClient, alice)
}

// In a real browser, over real PostgreSQL: alice follows a connect link,
// signs in at the authorization server, allows, signs in at the provider,
// allows, and lands on the success page; the provider's tokens are stored
// sealed, bound to the ticket's subject and client, with her upstream
// subject.
func TestBrowserLinksAnAccount(t *testing.T) {
	w := newWorld(t, worldOptions{postgres: true})
	page := browsertest.New(t)

	toProviderConsent(page, w.link(t))
	page.Click(testop.AllowButton)
	page.WaitText("Your github account alice@example.test is now linked.")

	row, ok := w.stored(t)
	if !ok {
		t.Fatal("nothing stored")
	}
	if row.Subject != alice.Subject || row.ClientID != asClientID || row.UpstreamSubject != alice.Subject ||
		row.AccessToken == "" || row.RefreshToken == "" {
		t.Errorf("stored row: binding %q/%q, upstream %q, access token %v, refresh token %v",
			row.Subject, row.ClientID, row.UpstreamSubject, row.AccessToken != "", row.RefreshToken != "")
	}
	sealed, err := w.raw.Get(context.Background(), sessionID, providerName)
	if err != nil {
		t.Fatal(err)
	}
	if sealed.AccessToken == row.AccessToken || sealed.RefreshToken == row.RefreshToken || sealed.IDToken == row.IDToken {
		t.Error("a token is stored in the clear")
	}
}

// In a real browser, every refusal ends on its page and stores nothing:
// bob signing in on alice's link, a link used before, a tampered state in
// the callback's URL, and consent denied at the provider.
func TestBrowserRefusals(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, w *world, page *browsertest.Page)
		says string
	}{
		{
			name: "another user",
			run: func(t *testing.T, w *world, page *browsertest.Page) {
				page.Navigate(w.link(t))
				connecttest.SignIn(page, loginClient, bob)
				page.Click(testop.AllowButton)
			},
			says: "The account you signed in with is not the one this link was made for.",
		},
		{
			name: "link used before",
			run: func(t *testing.T, w *world, page *browsertest.Page) {
				link := w.link(t)
				if a := newBrowser(t).follow(w, link, aliceAllows, aliceAllows); a.status != 200 {
					t.Fatalf("first use: %d", a.status)
				}
				if err := w.sessions.(interface {
					Delete(context.Context, string, string) error
				}).Delete(context.Background(), sessionID, ""); err != nil {
					t.Fatal(err)
				}
				toProviderConsent(page, link)
				page.Click(testop.AllowButton)
			},
			says: "This link has been used already",
		},
		{
			name: "tampered state",
			run: func(t *testing.T, w *world, page *browsertest.Page) {
				page.Navigate(w.link(t))
				connecttest.SignIn(page, loginClient, alice)
				page.Click(testop.AllowButton)
				page.WaitText("to continue to " + providerClient)
				page.Navigate(w.base + connect.PathProviderCallback + "?code=stolen-code&state=tampered")
			},
			says: "The answer from the sign-in server does not belong to the sign-in this browser started.",
		},
		{
			name: "consent denied at the provider",
			run: func(t *testing.T, w *world, page *browsertest.Page) {
				toProviderConsent(page, w.link(t))
				page.Click(testop.DenyButton)
			},
			says: "Access at the account",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, worldOptions{postgres: true})
			page := browsertest.New(t)
			tt.run(t, w, page)
			page.WaitText(tt.says)
			page.WaitText("go back to the application and repeat")
			if _, ok := w.stored(t); ok {
				t.Error("a row was stored")
			}
		})
	}
}
