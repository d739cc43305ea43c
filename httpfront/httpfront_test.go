package httpfront_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/httpfront"
)

// capture is a Decider that records the request and allows it with fixed
// headers.
type capture struct {
	got    *authz.Request
	answer *authz.Response // nil: allowGH
}

var allowGH = authz.Response{Allowed: true, Status: 200, Reason: "ok",
	Headers:       []authz.Header{{Name: "authorization", Value: "Bearer " + ghToken}},
	RemoveHeaders: []string{"x-google-id-token", "x-google-token"}}

func (c *capture) Check(_ context.Context, req authz.Request) authz.Response {
	c.got = &req
	if c.answer == nil {
		return allowGH
	}
	return *c.answer
}

// raw parses an HTTP/1.1 request as a server reads it off the wire, so that
// header-name case, repeated lines and the raw request target are exactly
// what the test writes.
func raw(t testing.TB, lines ...string) *http.Request {
	t.Helper()
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(strings.Join(lines, "\r\n") + "\r\n\r\n")))
	if err != nil {
		t.Fatalf("request does not parse: %v", err)
	}
	return req
}

func serve(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestRequestShapes(t *testing.T) {
	ext := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		req   []string
		host  string
		path  string
		ext   map[string]string // nil: no context extensions
		auth  string            // the authorization the decision sees
		envoy bool              // headers to remove are listed
	}{
		{name: "nginx auth_request",
			req:  []string{"GET /auth HTTP/1.1", "Host: 127.0.0.1:9002", "X-Original-URI: /github/repos?page=2", "X-Forwarded-Host: api.test", "Authorization: Bearer jwt"},
			host: "api.test", path: "/github/repos?page=2", auth: "Bearer jwt"},
		{name: "nginx with the original Host",
			req:  []string{"GET /auth HTTP/1.1", "Host: api.test", "X-Original-URI: /x", "Authorization: Bearer jwt"},
			host: "api.test", path: "/x", auth: "Bearer jwt"},
		{name: "traefik forwardAuth",
			req: []string{"GET /auth HTTP/1.1", "Host: extauthz:9002", "X-Forwarded-Method: POST", "X-Forwarded-Proto: https",
				"X-Forwarded-Host: api.test", "X-Forwarded-Uri: /calendar/events", "Authorization: Bearer jwt"},
			host: "api.test", path: "/calendar/events", auth: "Bearer jwt"},
		{name: "caddy forward_auth keeps the original Host",
			req:  []string{"GET /auth HTTP/1.1", "Host: api.test", "X-Forwarded-Method: GET", "X-Forwarded-Uri: /x", "Authorization: Bearer jwt"},
			host: "api.test", path: "/x", auth: "Bearer jwt"},
		{name: "both URI headers, equal",
			req:  []string{"GET /auth HTTP/1.1", "Host: api.test", "X-Original-URI: /x", "X-Forwarded-Uri: /x"},
			host: "api.test", path: "/x"},
		{name: "query on /auth ignored",
			req:  []string{"GET /auth?from=nginx HTTP/1.1", "Host: api.test", "X-Original-URI: /x"},
			host: "api.test", path: "/x"},
		{name: "any method",
			req:  []string{"POST /auth HTTP/1.1", "Host: api.test", "Content-Length: 0", "X-Original-URI: /x"},
			host: "api.test", path: "/x"},
		{name: "lower-case and upper-case header names",
			req:  []string{"GET /auth HTTP/1.1", "host: api.test", "x-original-uri: /x", "X-FORWARDED-HOST: api.test", "AUTHORIZATION: Bearer jwt", "x-extauthz-providers: gh"},
			host: "api.test", path: "/x", auth: "Bearer jwt", ext: ext("upstream_providers", "gh")},
		{name: "policy headers",
			req:  []string{"GET /auth HTTP/1.1", "Host: api.test", "X-Original-URI: /x", "X-Extauthz-Providers: gh,google", "X-Extauthz-Required-Scopes: read write"},
			host: "api.test", path: "/x", ext: ext("upstream_providers", "gh,google", "required_scopes", "read write")},
		{name: "an empty policy header is absent",
			req:  []string{"GET /auth HTTP/1.1", "Host: api.test", "X-Original-URI: /x", "X-Extauthz-Providers: "},
			host: "api.test", path: "/x"},
		{name: "underscore look-alike is not a policy header",
			req:  []string{"GET /auth HTTP/1.1", "Host: api.test", "X-Original-URI: /x", "X_Extauthz_Providers: google"},
			host: "api.test", path: "/x"},
		{name: "two authorization lines are joined",
			req:  []string{"GET /auth HTTP/1.1", "Host: api.test", "X-Original-URI: /x", "Authorization: Bearer a", "authorization: Bearer b"},
			host: "api.test", path: "/x", auth: "Bearer a,Bearer b"},
		{name: "envoy http_service",
			req:  []string{"GET /envoy/github/repos?page=2 HTTP/1.1", "host: API.test:8443", "authorization: Bearer jwt", "x-forwarded-host: evil.test"},
			host: "API.test:8443", path: "/github/repos?page=2", auth: "Bearer jwt", envoy: true},
		{name: "envoy root path",
			req:  []string{"HEAD /envoy HTTP/1.1", "Host: api.test"},
			host: "api.test", path: "/", envoy: true},
		{name: "envoy root with query",
			req:  []string{"GET /envoy?x=1 HTTP/1.1", "Host: api.test"},
			host: "api.test", path: "/?x=1", envoy: true},
		{name: "envoy path kept raw, not cleaned or redirected",
			req:  []string{"DELETE /envoy//a/../%2e%2e/b%2F HTTP/1.1", "Host: api.test"},
			host: "api.test", path: "//a/../%2e%2e/b%2F", envoy: true},
		{name: "envoy with a policy header from headers_to_add",
			req:  []string{"GET /envoy/x HTTP/1.1", "Host: api.test", "X-Extauthz-Providers: google"},
			host: "api.test", path: "/x", ext: ext("upstream_providers", "google"), envoy: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &capture{}
			rec := serve(httpfront.New(c, httpfront.Options{}), raw(t, tc.req...))
			if rec.Code != 200 || c.got == nil {
				t.Fatalf("status %d, body %s; want it decided and allowed", rec.Code, rec.Body)
			}
			if c.got.Host != tc.host || c.got.Path != tc.path {
				t.Errorf("host %q path %q, want %q %q", c.got.Host, c.got.Path, tc.host, tc.path)
			}
			if !reflect.DeepEqual(c.got.ContextExtensions, tc.ext) {
				t.Errorf("context extensions %v, want %v", c.got.ContextExtensions, tc.ext)
			}
			if got := c.got.Headers["authorization"]; got != tc.auth {
				t.Errorf("authorization %q, want %q", got, tc.auth)
			}
			for name := range c.got.Headers {
				if name != strings.ToLower(name) {
					t.Errorf("header name %q is not lower-case", name)
				}
			}
			if got := rec.Header().Get("Authorization"); got != "Bearer "+ghToken {
				t.Errorf("answer's Authorization %q", got)
			}
			removed := rec.Header().Get("X-Envoy-Auth-Headers-To-Remove")
			if tc.envoy && removed != "x-google-id-token,x-google-token" || !tc.envoy && removed != "" {
				t.Errorf("headers to remove %q (envoy shape %v)", removed, tc.envoy)
			}
			if rec.Body.Len() != 0 {
				t.Errorf("allowed with a body %q", rec.Body)
			}
		})
	}
}

// TestRefusedRequests: a request that does not say unambiguously what is
// being authorized is answered 400 without a decision, and neither the
// answer nor the log quotes a header value.
func TestRefusedRequests(t *testing.T) {
	const secret = "s3cret-value"
	for _, tc := range []struct {
		name       string
		req        []string
		routesOnly bool
		status     int
	}{
		{"no original URI", []string{"GET /auth HTTP/1.1", "Host: api.test", "Authorization: Bearer " + secret}, false, 400},
		{"URI headers disagree (a client's copy next to the proxy's)", []string{"GET /auth HTTP/1.1", "Host: api.test",
			"X-Original-URI: /admin/" + secret, "X-Forwarded-Uri: /public/" + secret}, false, 400},
		{"URI header twice", []string{"GET /auth HTTP/1.1", "Host: api.test", "X-Original-URI: /public", "x-original-uri: /admin/" + secret}, false, 400},
		{"URI not in origin form", []string{"GET /auth HTTP/1.1", "Host: api.test", "X-Forwarded-Uri: https://api.test/" + secret}, false, 400},
		{"forwarded host twice", []string{"GET /auth HTTP/1.1", "Host: api.test", "X-Original-URI: /x",
			"X-Forwarded-Host: public.test", "X-Forwarded-Host: " + secret}, false, 400},
		{"forwarded host list", []string{"GET /auth HTTP/1.1", "Host: api.test", "X-Original-URI: /x",
			"X-Forwarded-Host: public.test, " + secret}, false, 400},
		{"providers header twice", []string{"GET /auth HTTP/1.1", "Host: api.test", "X-Original-URI: /x",
			"X-Extauthz-Providers: gh", "X-EXTAUTHZ-PROVIDERS: " + secret}, false, 400},
		{"scopes header twice on envoy", []string{"GET /envoy/x HTTP/1.1", "Host: api.test",
			"X-Extauthz-Required-Scopes: a", "X-Extauthz-Required-Scopes: " + secret}, false, 400},
		{"providers header under routes_only", []string{"GET /auth HTTP/1.1", "Host: api.test", "X-Original-URI: /x",
			"X-Extauthz-Providers: " + secret}, true, 400},
		{"empty providers header under routes_only", []string{"GET /envoy/x HTTP/1.1", "Host: api.test",
			"X-Extauthz-Providers: "}, true, 400},
		{"scopes header under routes_only", []string{"GET /envoy/x HTTP/1.1", "Host: api.test",
			"X-Extauthz-Required-Scopes: " + secret}, true, 400},
		{"other path", []string{"GET /authz HTTP/1.1", "Host: api.test", "X-Original-URI: /x"}, false, 404},
		{"auth subpath", []string{"GET /auth/x HTTP/1.1", "Host: api.test", "X-Original-URI: /x"}, false, 404},
		{"envoy look-alike", []string{"GET /envoyx HTTP/1.1", "Host: api.test"}, false, 404},
		{"absolute-form target", []string{"GET http://api.test/auth HTTP/1.1", "Host: api.test", "X-Original-URI: /x"}, false, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			c := &capture{}
			h := httpfront.New(c, httpfront.Options{RoutesOnly: tc.routesOnly, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			rec := serve(h, raw(t, tc.req...))
			if rec.Code != tc.status || c.got != nil {
				t.Fatalf("status %d (decided: %v), want %d undecided", rec.Code, c.got != nil, tc.status)
			}
			if tc.status == 400 {
				if ct := rec.Header().Get("Content-Type"); ct != "application/json" || !strings.Contains(rec.Body.String(), `"error":"invalid_request"`) {
					t.Errorf("answer %s %s", ct, rec.Body)
				}
				if !strings.Contains(logs.String(), "authorization request refused") {
					t.Errorf("refusal not logged: %s", logs.String())
				}
			}
			if strings.Contains(rec.Body.String(), secret) || strings.Contains(logs.String(), secret) {
				t.Errorf("a header value leaked:\nbody %s\nlogs %s", rec.Body, logs.String())
			}
		})
	}
}

func TestRoutesOnlyWithoutPolicyHeadersDecides(t *testing.T) {
	c := &capture{}
	rec := serve(httpfront.New(c, httpfront.Options{RoutesOnly: true}),
		raw(t, "GET /auth HTTP/1.1", "Host: api.test", "X-Original-URI: /x", "X_Extauthz_Providers: gh"))
	if rec.Code != 200 || c.got == nil || c.got.ContextExtensions != nil {
		t.Fatalf("status %d, request %+v", rec.Code, c.got)
	}
}

// TestSmugglingThroughTheDecision runs client-forged headers through the
// real decision: nothing a client sends chooses another route or passes as
// a credential.
func TestSmugglingThroughTheDecision(t *testing.T) {
	rec := &recorder{}
	h := httpfront.New(newDecider(rec, true), httpfront.Options{RoutesOnly: true})
	for _, tc := range []struct {
		name   string
		req    []string
		status int
		reason string
	}{
		{"a second Authorization does not pass as the first",
			[]string{"GET /auth HTTP/1.1", "Host: api.test", "X-Original-URI: /x", "Authorization: Bearer forged", "Authorization: Bearer jwt-ok"}, 401, "invalid_token"},
		{"the same, by case",
			[]string{"GET /envoy/x HTTP/1.1", "Host: api.test", "authorization: Bearer jwt-ok", "AUTHORIZATION: Bearer jwt-admin"}, 401, "invalid_token"},
		{"a forwarded host on the Envoy shape does not choose the route",
			[]string{"GET /envoy/admin/x HTTP/1.1", "Host: api.test", "X-Forwarded-Host: other.test", "Authorization: Bearer jwt-ok"}, 403, "insufficient_scope"},
		{"dot-segments do not leave the route",
			[]string{"GET /auth HTTP/1.1", "Host: x", "X-Original-URI: /public/../admin/x", "X-Forwarded-Host: api.test", "Authorization: Bearer jwt-ok"}, 403, "insufficient_scope"},
		{"encoded letters do not leave the route",
			[]string{"GET /envoy/%61dmin/x HTTP/1.1", "Host: API.TEST.", "Authorization: Bearer jwt-ok"}, 403, "insufficient_scope"},
		{"a provider header is refused under routes_only",
			[]string{"GET /auth HTTP/1.1", "Host: api.test", "X-Original-URI: /admin/x", "X-Extauthz-Providers: gh", "Authorization: Bearer jwt-ok"}, 400, ""},
		{"the route applies",
			[]string{"GET /auth HTTP/1.1", "Host: api.test", "X-Original-URI: /admin/x", "Authorization: Bearer jwt-admin"}, 200, "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := serve(h, raw(t, tc.req...))
			var want []string
			if tc.reason != "" {
				want = []string{tc.reason}
			}
			if got := rec.take(); resp.Code != tc.status || !reflect.DeepEqual(got, want) {
				t.Errorf("status %d reasons %v, want %d %v", resp.Code, got, tc.status, want)
			}
			if resp.Code != 200 && strings.Contains(resp.Header().Get("Authorization")+resp.Body.String(), ghToken) {
				t.Error("a deny carries the upstream token")
			}
		})
	}
}

type panicky struct{}

func (panicky) Check(context.Context, authz.Request) authz.Response {
	panic(errors.New("token " + ghToken + " in a panic"))
}

func TestPanicBecomes500WithoutLeaking(t *testing.T) {
	var logs bytes.Buffer
	h := httpfront.New(panicky{}, httpfront.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	rec := serve(h, raw(t, "GET /auth HTTP/1.1", "Host: api.test", "X-Original-URI: /x"))
	if rec.Code != 500 || strings.Contains(rec.Body.String(), ghToken) {
		t.Fatalf("status %d body %s", rec.Code, rec.Body)
	}
	if !strings.Contains(logs.String(), "panic in HTTP authorization handler") || strings.Contains(logs.String(), ghToken) {
		t.Errorf("logs: %s", logs.String())
	}
}

// TestDenyNeverReadsAsAllow: whatever status a deny carries, a proxy never
// receives a 2xx or 3xx for it.
func TestDenyNeverReadsAsAllow(t *testing.T) {
	for _, status := range []int{0, 200, 204, 302, 600} {
		c := &capture{answer: &authz.Response{Status: status, Reason: "x", Body: "{}"}}
		rec := serve(httpfront.New(c, httpfront.Options{}), raw(t, "GET /envoy/ HTTP/1.1", "Host: a"))
		if rec.Code != 500 {
			t.Errorf("deny with status %d answered %d", status, rec.Code)
		}
	}
}
