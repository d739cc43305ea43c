//go:build unix

package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/jwtauth/jwttest"
)

// slowIssuer is an OIDC issuer whose discovery answers at once and whose
// keys come only after delay.
func slowIssuer(t *testing.T, signer *jwttest.Signer, delay time.Duration) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": srv.URL, "jwks_uri": srv.URL + "/jwks",
			"authorization_endpoint": srv.URL + "/authorize", "token_endpoint": srv.URL + "/token",
			"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"ES256", "RS256"},
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(signer.JWKS())
	})
	return srv
}

// 8. Checking a refreshed ID token whose issuer's keys are slower than the
// lease does not let the lease lapse: another replica never redeems the
// same refresh token again.
func TestSlowIssuerKeysDoNotLetTheLeaseLapse(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	signer := jwttest.NewSigner(t)
	issuer := slowIssuer(t, signer, lockTimeout+3*time.Second)
	c.oidcIssuer = issuer.URL
	c.idp.idToken = func(session string) string {
		now := time.Now()
		return signer.Sign(t, map[string]any{
			"iss": issuer.URL, "aud": clientID, "sub": "upstream-" + session,
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		})
	}
	a, b := c.start("a"), c.start("b")
	s := c.seed(t, "s-slow-keys", "oidc", true)

	first := make(chan result, 1)
	go func() { first <- a.checkWithin(30*time.Second, s.jwt, "oidc") }()
	// Had the lease covered only the provider call, a would still be
	// waiting for the keys now, its lease lapsed.
	time.Sleep(lockTimeout + time.Second)
	rb := b.checkWithin(30*time.Second, s.jwt, "oidc")
	ra := <-first

	st := c.idp.session(s.id)
	if st.redemptions != 1 || st.reuses != 0 || st.revoked {
		t.Errorf("provider saw %d redemptions, %d reuses, family revoked %v; want 1, 0, false", st.redemptions, st.reuses, st.revoked)
	}
	wantOK(t, "Check on a (redeemed)", ra, st.access)
	wantOK(t, "Check on b after a's lease would have lapsed", rb, st.access)
	wantRotatedRow(t, c, s)
	t.Logf("a answered after %v (lease %v)", ra.elapsed.Round(time.Millisecond), lockTimeout)
}

// 9. A session whose grant the provider refuses (Entra's
// interaction_required) or refuses with a code nobody knows does not pause
// the provider for the other sessions.
func TestOneSessionCannotPauseTheProvider(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a := c.start("a", withBackoff(5*time.Second, 10*time.Second))

	ca := c.seed(t, "s-entra-ca", "entra", true)
	c.idp.setCode(ca.id, "interaction_required")
	other := c.seed(t, "s-entra-1", "entra", true)
	wantReauth(t, "interaction_required", a.checkWithin(10*time.Second, ca.jwt, "entra"))
	wantOK(t, "another session of the provider right after", a.checkWithin(10*time.Second, other.jwt, "entra"), c.idp.session(other.id).access)
	if r := c.row(t, ca); !r.NeedsReauth {
		t.Error("the refused session's row is not marked for re-authentication")
	}

	odd := c.seed(t, "s-entra-odd", "entra", true)
	c.idp.setCode(odd.id, "brand_new_code")
	v := c.row(t, odd).Version
	r := a.checkWithin(10*time.Second, odd.jwt, "entra")
	failedAt := time.Now()
	want503(t, "unknown error code", r)
	third := c.seed(t, "s-entra-2", "entra", true)
	wantOK(t, "another session after an unknown code", a.checkWithin(10*time.Second, third.jwt, "entra"), c.idp.session(third.id).access)
	r = a.checkWithin(10*time.Second, odd.jwt, "entra")
	if time.Since(failedAt) < 4*time.Second {
		want503(t, "the same session during its pause", r)
		if n := c.idp.session(odd.id).redemptions; n != 1 {
			t.Errorf("provider asked %d times for the paused session, want 1", n)
		}
	}
	wantRowUnchanged(t, c, odd, v)
	logged := false
	for _, line := range strings.Split(a.logs.String(), "\n") {
		if strings.Contains(line, `"outcome":"unknown_refusal"`) && strings.Contains(line, "brand_new_code") {
			logged = true
		}
	}
	if !logged {
		t.Error("the unknown error code is not logged")
	}
}

// 10. PostgreSQL stops right after the provider rotated the refresh token:
// the new tokens are served by the replica that redeemed them and stored
// when the database is back, and nobody redeems the spent token again.
func TestStoreOutageDuringRedemptionLosesNothing(t *testing.T) {
	t.Parallel()
	pg := pgtest.Stoppable(t)
	c := newClusterOn(t, pg.DSN())
	// The provider's answer is held while PostgreSQL stops, which can take
	// seconds on a loaded machine: refresh.timeout must outlast that.
	a, b := c.start("a", withRefreshTimeout(10*time.Second)), c.start("b", withRefreshTimeout(10*time.Second))
	s := c.seed(t, "s-outage", "idp", true)

	h := c.idp.holdNext(s.id, holdAfterProcessing)
	first := make(chan result, 1)
	go func() { first <- a.checkWithin(60*time.Second, s.jwt, "") }()
	h.waitArrived(t, 10*time.Second)
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	h.Release(true)
	ra := <-first
	st := c.idp.session(s.id)
	wantOK(t, "the Check that redeemed", ra, st.access)
	wantOK(t, "a during the outage", a.checkWithin(10*time.Second, s.jwt, ""), st.access)
	want503(t, "b during the outage", b.checkWithin(10*time.Second, s.jwt, ""))

	time.Sleep(time.Until(stoppedAt.Add(4 * time.Second)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pg.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	restartedAt := time.Now()
	for {
		r, err := c.store.Get(ctx, s.id, s.provider)
		if err == nil && r.RefreshToken == st.refresh {
			break
		}
		if time.Since(restartedAt) > 20*time.Second {
			t.Fatalf("the rotated tokens were not stored within 20s of the database's return")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("stored %v after the database came back (outage %v)", time.Since(restartedAt).Round(time.Millisecond), restartedAt.Sub(stoppedAt).Round(time.Millisecond))
	wantOK(t, "b after the outage", b.checkWithin(10*time.Second, s.jwt, ""), st.access)
	wantOK(t, "a after the outage", a.checkWithin(10*time.Second, s.jwt, ""), st.access)
	if st := c.idp.session(s.id); st.redemptions != 1 || st.reuses != 0 {
		t.Errorf("provider saw %d redemptions, %d reuses; want 1, 0", st.redemptions, st.reuses)
	}
	wantRotatedRow(t, c, s)
	if logs := a.logs.String(); !strings.Contains(logs, `"outcome":"deferred"`) || !strings.Contains(logs, "deferred write stored") {
		t.Error("a's log does not show the deferred write and its storing")
	}
}
