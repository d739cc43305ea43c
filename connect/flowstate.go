package connect

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/extauthz/extauthz/tokencrypt"
)

// FlowPurpose is the purpose the flow cookie is sealed for
// (tokencrypt.Keyring.SealPayload): it can never be taken for a ticket or a
// row's ciphertext, nor they for it.
const FlowPurpose = "extauthz connect flow v1"

// The flow cookie's names. The __Host- prefix makes the browser refuse the
// cookie unless it is Secure, has Path=/ and no Domain, so no other host
// (a sibling subdomain) and no plain-http page can plant or overwrite it.
// Browsers accept __Host- only from https pages, so a public URL of plain
// http on a loopback host (development and tests) uses DevCookieName, which
// has no prefix and no Secure flag.
const (
	CookieName    = "__Host-extauthz-connect"
	DevCookieName = "extauthz-connect"
)

// flowTTL bounds a flow's cookie: the sign-in and the consent at both
// servers must finish within it (and within the ticket's own time).
const flowTTL = 15 * time.Minute

// The stages of a flow, as the cookie records them.
const (
	stageLogin    = "login"    // sent to the primary authorization server
	stageProvider = "provider" // sent to the provider
)

// flowState is what the flow cookie holds, sealed: the ticket (redeemed
// only at the provider's callback) and the secrets of the authorization
// request in flight. Nothing of it is kept in the server's memory, so any
// replica can serve any step.
type flowState struct {
	Stage    string    `json:"g"`
	Ticket   string    `json:"t"`
	State    string    `json:"s"`
	Nonce    string    `json:"n,omitempty"`
	Verifier string    `json:"v"`
	Expires  time.Time `json:"e"`
}

// errNoFlow is the cookie's absence or an unreadable cookie.
var errNoFlow = errors.New("connect: no flow cookie, or an unreadable one")

// randomToken returns 32 random bytes, base64url without padding (a state,
// nonce or PKCE verifier: 43 characters, as RFC 7636 asks at least).
func randomToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// challengeS256 is the PKCE S256 code challenge of verifier.
func challengeS256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// newFlow returns a flow state for stage with a fresh state, PKCE verifier
// and, when withNonce, nonce.
func newFlow(stage, ticket string, expires time.Time, withNonce bool) (flowState, error) {
	f := flowState{Stage: stage, Ticket: ticket, Expires: expires}
	var err error
	if f.State, err = randomToken(); err != nil {
		return flowState{}, err
	}
	if f.Verifier, err = randomToken(); err != nil {
		return flowState{}, err
	}
	if withNonce {
		if f.Nonce, err = randomToken(); err != nil {
			return flowState{}, err
		}
	}
	return f, nil
}

// stateMatches compares the state a callback carries with the cookie's in
// constant time.
func (f flowState) stateMatches(state string) bool {
	return state != "" && subtle.ConstantTimeCompare([]byte(state), []byte(f.State)) == 1
}

// cookieJar writes and reads the flow cookie.
type cookieJar struct {
	keys   *tokencrypt.Keyring
	name   string
	secure bool
	now    func() time.Time
}

// newCookieJar picks the cookie's name and flags for the public URL u:
// __Host- and Secure for https; without both for http on a loopback host;
// any other http URL is refused.
func newCookieJar(keys *tokencrypt.Keyring, u *url.URL, now func() time.Time) (cookieJar, error) {
	switch {
	case u.Scheme == "https":
		return cookieJar{keys: keys, name: CookieName, secure: true, now: now}, nil
	case isLoopback(u.Hostname()):
		return cookieJar{keys: keys, name: DevCookieName, now: now}, nil
	default:
		return cookieJar{}, errors.New("connect: the public URL must be https (plain http only on a loopback host)")
	}
}

// isLoopback reports whether host is localhost or a loopback IP address.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// set seals f into the cookie. The cookie is HttpOnly, SameSite=Lax (the
// callbacks are top-level navigations from the servers' sites, which Lax
// lets through and Strict would not), Path=/ and lives until f expires.
func (j cookieJar) set(w http.ResponseWriter, f flowState) error {
	plain, err := json.Marshal(f)
	if err != nil {
		return err
	}
	sealed, err := j.keys.SealPayload(FlowPurpose, plain)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: j.name, Value: sealed, Path: "/", MaxAge: max(1, int(f.Expires.Sub(j.now()).Seconds())),
		Secure: j.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
	return nil
}

// clear removes the cookie: a flow that ended, well or not, cannot be
// replayed from this browser.
func (j cookieJar) clear(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: j.name, Value: "", Path: "/", MaxAge: -1,
		Secure: j.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// get opens the cookie of r. A missing, foreign, altered or expired cookie
// is errNoFlow. Only the first cookie of the name counts.
func (j cookieJar) get(r *http.Request) (flowState, error) {
	c, err := r.Cookie(j.name)
	if err != nil || len(c.Value) > 4096 {
		return flowState{}, errNoFlow
	}
	plain, err := j.keys.OpenPayload(FlowPurpose, c.Value)
	if err != nil {
		return flowState{}, errNoFlow
	}
	var f flowState
	if json.Unmarshal(plain, &f) != nil || f.State == "" || f.Verifier == "" || f.Ticket == "" {
		return flowState{}, errNoFlow
	}
	if !j.now().Before(f.Expires) {
		return flowState{}, errNoFlow
	}
	return f, nil
}
