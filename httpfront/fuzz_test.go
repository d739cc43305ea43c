package httpfront_test

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/httpfront"
)

// FuzzRequest feeds raw requests, as a server reads them off the wire,
// through the front. Whatever the input: no panic; the answer is the
// decision (200 here), 400 or 404; a decided request has an origin-form
// path that one of the proxy's headers (forward auth) or the request target
// (Envoy) named, a single Authorization value that is every line of it
// joined, and lower-case header names.
func FuzzRequest(f *testing.F) {
	for _, seed := range []string{
		"GET /auth HTTP/1.1\r\nHost: a\r\nX-Original-URI: /x\r\nAuthorization: Bearer t\r\n\r\n",
		"GET /auth HTTP/1.1\r\nHost: a\r\nX-Forwarded-Uri: /x\r\nX-Forwarded-Host: b\r\nX-Forwarded-Method: GET\r\n\r\n",
		"GET /auth HTTP/1.1\r\nHost: a\r\nX-Original-URI: /x\r\nX-Forwarded-Uri: /y\r\n\r\n",
		"GET /auth HTTP/1.1\r\nHost: a\r\nX-Original-URI: /x\r\nauthorization: Bearer a\r\nAUTHORIZATION: Bearer b\r\n\r\n",
		"GET /envoy/a/../b?c HTTP/1.1\r\nHost: a\r\nx-extauthz-providers: gh\r\n\r\n",
		"GET /envoy HTTP/1.1\r\nHost: a\r\nX-Extauthz-Required-Scopes: a b\r\nX-Extauthz-Required-Scopes: c\r\n\r\n",
		"GET /envoy?x HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
		"GET http://h/auth HTTP/1.1\r\nHost: a\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		f.Add([]byte(seed), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, routesOnly bool) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		c := &capture{}
		rec := serve(httpfront.New(c, httpfront.Options{RoutesOnly: routesOnly}), req)
		switch rec.Code {
		case 200:
		case 400, 404:
			if c.got != nil {
				t.Fatalf("answered %d after deciding", rec.Code)
			}
			return
		default:
			t.Fatalf("status %d", rec.Code)
		}
		got := c.got
		if got == nil {
			t.Fatal("allowed without a decision")
		}
		if !strings.HasPrefix(got.Path, "/") {
			t.Fatalf("path %q is not origin-form", got.Path)
		}
		if strings.HasPrefix(req.RequestURI, httpfront.PathEnvoy) {
			if httpfront.PathEnvoy+got.Path != req.RequestURI && httpfront.PathEnvoy+got.Path != httpfront.PathEnvoy+"/"+strings.TrimPrefix(req.RequestURI, httpfront.PathEnvoy) {
				t.Fatalf("envoy path %q from target %q", got.Path, req.RequestURI)
			}
			if got.Host != req.Host {
				t.Fatalf("envoy host %q, Host %q", got.Host, req.Host)
			}
		} else {
			named := req.Header.Values("X-Original-URI")
			named = append(named, req.Header.Values("X-Forwarded-Uri")...)
			found := false
			for _, n := range named {
				found = found || strings.TrimSpace(n) == got.Path
			}
			if !found {
				t.Fatalf("forward-auth path %q named by none of %q", got.Path, named)
			}
			if fh := req.Header.Values("X-Forwarded-Host"); len(fh) > 1 || len(fh) == 1 && strings.Contains(fh[0], ",") {
				t.Fatalf("decided with X-Forwarded-Host %q", fh)
			}
		}
		if want := strings.Join(req.Header.Values("Authorization"), ","); got.Headers["authorization"] != want {
			t.Fatalf("authorization %q, lines joined %q", got.Headers["authorization"], want)
		}
		if routesOnly && got.ContextExtensions != nil {
			t.Fatalf("context extensions %v under routes_only", got.ContextExtensions)
		}
		for name := range got.Headers {
			if name != strings.ToLower(name) {
				t.Fatalf("header name %q", name)
			}
		}
	})
}
