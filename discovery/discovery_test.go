package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// op is a fake OpenID Provider serving a discovery document that a test
// can change.
type op struct {
	srv  *httptest.Server
	hits atomic.Int32
	mu   sync.Mutex
	doc  map[string]any
	code int
}

func newOP(t *testing.T) *op {
	t.Helper()
	o := &op{code: http.StatusOK}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.hits.Add(1)
		if r.URL.Path != WellKnownPath {
			http.NotFound(w, r)
			return
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		w.WriteHeader(o.code)
		_ = json.NewEncoder(w).Encode(o.doc)
	}))
	t.Cleanup(o.srv.Close)
	o.doc = map[string]any{
		"issuer":                                o.srv.URL,
		"authorization_endpoint":                o.srv.URL + "/authorize",
		"token_endpoint":                        o.srv.URL + "/token",
		"revocation_endpoint":                   o.srv.URL + "/revoke",
		"jwks_uri":                              o.srv.URL + "/jwks",
		"token_endpoint_auth_methods_supported": []string{"private_key_jwt", "tls_client_auth"},
	}
	return o
}

func (o *op) set(key string, v any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if v == nil {
		delete(o.doc, key)
	} else {
		o.doc[key] = v
	}
}

func (o *op) status(code int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.code = code
}

func TestLookup(t *testing.T) {
	for _, tc := range []struct {
		name     string
		slash    bool // the issuer ends in "/"
		mutate   func(o *op)
		insecure bool
		want     error  // with text "": the document is accepted
		text     string // in the error
	}{
		{name: "accepted", mutate: func(*op) {}},
		{name: "issuer with a trailing slash", slash: true, mutate: func(o *op) { o.set("issuer", o.srv.URL+"/") }},
		{name: "no revocation endpoint", mutate: func(o *op) { o.set("revocation_endpoint", nil) }},
		{name: "another issuer", mutate: func(o *op) { o.set("issuer", "https://evil.example") }, want: ErrInvalidDocument, text: "not the configured issuer"},
		{name: "plain http to a remote host", mutate: func(o *op) { o.set("token_endpoint", "http://idp.example/token") },
			want: ErrInvalidDocument, text: "token_endpoint uses plain http"},
		{name: "plain http allowed", insecure: true, mutate: func(o *op) { o.set("token_endpoint", "http://idp.example/token") }},
		{name: "relative endpoint", mutate: func(o *op) { o.set("revocation_endpoint", "/revoke") }, want: ErrInvalidDocument, text: "revocation_endpoint is not an absolute"},
		{name: "credentials in an endpoint", mutate: func(o *op) { o.set("jwks_uri", "https://u:pw@idp.example/jwks") }, want: ErrInvalidDocument, text: "jwks_uri is not"},
		{name: "not the expected shape", mutate: func(o *op) { o.set("issuer", 42) }, want: ErrInvalidDocument, text: "expected shape"},
		{name: "HTTP 500", mutate: func(o *op) { o.status(http.StatusInternalServerError) }, text: "HTTP 500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOP(t)
			tc.mutate(o)
			issuer := o.srv.URL
			if tc.slash {
				issuer += "/"
			}
			c := New(map[string]Source{"idp": {Issuer: issuer}}, Options{AllowInsecureHTTP: tc.insecure})
			m, err := c.Lookup(context.Background(), "idp")
			if tc.text == "" {
				if err != nil {
					t.Fatal(err)
				}
				if m.TokenEndpoint == "" || m.Issuer != issuer || m.AuthorizationEndpoint != o.srv.URL+"/authorize" ||
					len(m.TokenEndpointAuthMethods) != 2 {
					t.Errorf("metadata = %+v", m)
				}
				return
			}
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("err = %v, want %v with %q", err, tc.want, tc.text)
			}
			for _, leak := range []string{"evil.example", "idp.example", "pw@"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error %q quotes the document", err)
				}
			}
		})
	}
}

func TestCachedAndRetried(t *testing.T) {
	o := newOP(t)
	o.status(http.StatusServiceUnavailable)
	var mu sync.Mutex
	clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}
	advance := func(d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(d)
	}
	c := New(map[string]Source{"idp": {Issuer: o.srv.URL}, "other": {Issuer: o.srv.URL}}, Options{Now: now})
	if errs := c.Prefetch(context.Background()); len(errs) != 2 {
		t.Fatalf("Prefetch failures = %v, want both providers", errs)
	}
	o.status(http.StatusOK)
	advance(DefaultRetryInterval - time.Nanosecond)
	if _, err := c.Lookup(context.Background(), "idp"); err == nil || !strings.Contains(err.Error(), "failed recently") {
		t.Fatalf("within the retry interval: err = %v", err)
	}
	if n := o.hits.Load(); n != 2 {
		t.Fatalf("hits = %d, want 2 (one per provider)", n)
	}
	advance(time.Nanosecond)
	if errs := c.Prefetch(context.Background()); errs != nil {
		t.Fatalf("Prefetch after the interval: %v", errs)
	}
	for range 3 {
		if _, err := c.Lookup(context.Background(), "idp"); err != nil {
			t.Fatal(err)
		}
	}
	if n := o.hits.Load(); n != 4 {
		t.Errorf("hits = %d, want 4: each document fetched once more, then cached", n)
	}
	if _, err := c.Lookup(context.Background(), "nope"); !errors.Is(err, ErrUnknownProvider) {
		t.Errorf("unknown provider: err = %v", err)
	}
}

func TestUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	c := New(map[string]Source{"idp": {Issuer: srv.URL + "/tenant?secret=x"}}, Options{})
	_, err := c.Lookup(context.Background(), "idp")
	if err == nil || errors.Is(err, ErrInvalidDocument) || strings.Contains(err.Error(), "secret=x") {
		t.Fatalf("err = %v, want a network failure without the URL", err)
	}
}
