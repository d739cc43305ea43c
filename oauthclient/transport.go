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
	// errAddForm means the request body could not be rewritten.
	errAddForm = errors.New("oauthclient: cannot add fields to the token request")
)

// attemptKey is the context key of the *attempt of one Refresh call.
type attemptKey struct{}

// attempt records what the transport saw during one Refresh, Exchange or
// Revoke call.
type attempt struct {
	// form holds fields the transport sets in the form-encoded body of the
	// request (x/oauth2 sends no scope on a refresh, and no client
	// assertion); nil or empty: the body is sent as it is.
	form url.Values

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

// transport is the RoundTripper of one provider's HTTP client. It sets the
// attempt's form fields in the request body, lets at most one request
// through per Refresh, Exchange or Revoke call, and records the status and
// headers of the answer.
type transport struct {
	base http.RoundTripper
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
	if a != nil && len(a.form) > 0 {
		r, err := withForm(req, a.form)
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

// withForm returns a copy of the form-encoded POST req whose body has the
// fields of set set, replacing any of the same name. It closes req's body,
// as a RoundTripper must.
func withForm(req *http.Request, set url.Values) (*http.Request, error) {
	if ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); req.Method != http.MethodPost || ct != "application/x-www-form-urlencoded" {
		closeBody(req)
		return nil, errAddForm
	}
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, errAddForm
		}
		body = b
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, errAddForm
	}
	for k, v := range set {
		form[k] = v
	}
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
