package oauthclient

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

var (
	// errSecondRequest is returned by the transport when one Refresh (or
	// Revoke) call would send a second request. x/oauth2 with an explicit auth style
	// never does, and redirects are not followed; this is a last guard
	// against redeeming a refresh token twice.
	errSecondRequest = errors.New("oauthclient: second token request refused")
	// errAddScope means the request body could not be rewritten.
	errAddScope = errors.New("oauthclient: cannot add scope to the token request")
)

// attemptKey is the context key of the *attempt of one Refresh call.
type attemptKey struct{}

// attempt records what the transport saw during one Refresh or Revoke
// call.
type attempt struct {
	// revocation marks a Revoke call, whose request never gets the
	// refresh's scope parameter, even if the revocation URL is the token
	// URL.
	revocation bool

	mu     sync.Mutex
	sent   int
	status int
	header http.Header
}

func (a *attempt) response() (int, http.Header) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status, a.header
}

// transport is the RoundTripper of one provider's HTTP client. It adds the
// provider's scope parameter to token requests (x/oauth2 does not send scope
// on a refresh), lets at most one request through per Refresh or Revoke call, and
// records the status and headers of the answer.
type transport struct {
	base     http.RoundTripper
	tokenURL *url.URL
	scope    string // space-separated; empty: none
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	a, _ := req.Context().Value(attemptKey{}).(*attempt)
	if a != nil {
		a.mu.Lock()
		a.sent++
		n := a.sent
		a.mu.Unlock()
		if n > 1 {
			closeBody(req)
			return nil, errSecondRequest
		}
	}
	if t.scope != "" && (a == nil || !a.revocation) && t.isTokenRequest(req) {
		r, err := withForm(req, "scope", t.scope)
		if err != nil {
			return nil, err
		}
		req = r
	}
	resp, err := t.base.RoundTrip(req)
	if a != nil && resp != nil {
		a.mu.Lock()
		a.status, a.header = resp.StatusCode, resp.Header
		a.mu.Unlock()
	}
	return resp, err
}

func (t *transport) isTokenRequest(req *http.Request) bool {
	if req.Method != http.MethodPost || req.URL == nil {
		return false
	}
	if ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); ct != "application/x-www-form-urlencoded" {
		return false
	}
	u := req.URL
	return strings.EqualFold(u.Scheme, t.tokenURL.Scheme) && strings.EqualFold(u.Host, t.tokenURL.Host) &&
		u.EscapedPath() == t.tokenURL.EscapedPath() && u.RawQuery == t.tokenURL.RawQuery
}

// withForm returns a copy of the form-encoded POST req whose body has the
// field key set to value. It closes req's body, as a RoundTripper must.
func withForm(req *http.Request, key, value string) (*http.Request, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, errAddScope
		}
		body = b
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, errAddScope
	}
	form.Set(key, value)
	enc := form.Encode()

	r := req.Clone(req.Context())
	r.Body = io.NopCloser(strings.NewReader(enc))
	r.ContentLength = int64(len(enc))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(enc)), nil }
	return r, nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
