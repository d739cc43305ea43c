package httpfront_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/extauthz/extauthz/httpfront"
	"github.com/extauthz/extauthz/internal/envoyconf"
	"github.com/extauthz/extauthz/server"
)

// envoyHTTP acts out Envoy's ext_authz filter with the http_service of
// envoy/envoy-http.yaml, as Envoy's API documentation and its source
// (source/extensions/filters/common/ext_authz/ext_authz_http_impl.cc and
// check_request_utils.cc, source/extensions/filters/http/ext_authz/ext_authz.cc,
// source/common/http/async_client_impl.cc) describe it.
type envoyHTTP struct {
	t *testing.T
	a *extauthzv3.ExtAuthz
}

// loadEnvoyHTTP reads the shipped bootstrap with go-control-plane's types.
func loadEnvoyHTTP(t *testing.T) envoyHTTP {
	t.Helper()
	data, err := os.ReadFile("../envoy/envoy-http.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := envoyconf.Bootstrap(data)
	if err != nil {
		t.Fatal(err)
	}
	found, err := envoyconf.Unpacked(b)
	if err != nil {
		t.Fatal(err)
	}
	filters := envoyconf.Typed[*extauthzv3.ExtAuthz](found)
	if len(filters) != 1 || filters[0].GetHttpService() == nil {
		t.Fatalf("envoy-http.yaml: want one ext_authz filter with an http_service, found %d", len(filters))
	}
	return envoyHTTP{t: t, a: filters[0]}
}

func (e envoyHTTP) matches(list *matcherv3.ListStringMatcher, name string) bool {
	e.t.Helper()
	ok, err := envoyconf.Matches(list, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return ok
}

// forwarded reports whether Envoy copies the client's header name (lower
// case) into the authorization request: the ones it always sends
// (authorization; the method, path and host are the request line and
// Host) and allowed_headers, less disallowed_headers.
func (e envoyHTTP) forwarded(name string) bool {
	if e.matches(e.a.GetDisallowedHeaders(), name) {
		return false
	}
	return name == "authorization" || e.matches(e.a.GetAllowedHeaders(), name)
}

// envoyLocalAddress is what Envoy's HTTP client appends to
// x-forwarded-for: its own address.
const envoyLocalAddress = "10.0.0.2"

// send writes to addr, over HTTP/1.1 on a new connection, the authorization
// request Envoy sends for the client's request: the original method; the
// path_prefix before the original path (with its query); Host the
// original :authority; the forwarded headers in lower case, repeated ones
// joined with "," (as in a CheckRequest); content-length 0 (no body); and
// what Envoy's HTTP client adds: x-envoy-internal, x-forwarded-for and
// x-envoy-expected-rq-timeout-ms. It returns the answer and its body.
func (e envoyHTTP) send(addr, method string, o original) (*http.Response, []byte) {
	e.t.Helper()
	hs := e.a.GetHttpService()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s%s HTTP/1.1\r\nhost: %s\r\n", method, hs.GetPathPrefix(), o.path, o.host)
	names := make([]string, 0, len(o.headers))
	for name := range o.headers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if lower := strings.ToLower(name); e.forwarded(lower) {
			fmt.Fprintf(&b, "%s: %s\r\n", lower, strings.Join(o.headers[name], ","))
		}
	}
	for _, h := range hs.GetAuthorizationRequest().GetHeadersToAdd() {
		fmt.Fprintf(&b, "%s: %s\r\n", strings.ToLower(h.GetKey()), h.GetValue())
	}
	fmt.Fprintf(&b, "content-length: 0\r\nx-envoy-internal: true\r\nx-forwarded-for: %s\r\nx-envoy-expected-rq-timeout-ms: %d\r\n\r\n",
		envoyLocalAddress, hs.GetServerUri().GetTimeout().AsDuration().Milliseconds())

	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, b.String()); err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		e.t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, body
}

// outcome is what Envoy makes of an authorization answer: the request the
// backend gets, or the answer the client gets.
type outcome struct {
	allowed  bool
	upstream http.Header // allowed: the request's headers as the backend gets them
	status   int         // denied: the client's status, headers from the answer, body
	header   map[string]string
	body     string
}

// apply does what Envoy does with the answer to the client's request
// headers. 200: every answer header matching allowed_upstream_headers is
// set (overwriting the client's), allowed_upstream_headers_to_append are
// appended, then the names listed in x-envoy-auth-headers-to-remove are
// removed (never Host). 5xx: an error; the client gets status_on_error
// (403 when unset) and nothing of the answer. Any other status: the client
// gets it, the body, and the answer headers matching allowed_client_headers
// with the ones Envoy adds to a non-empty list (WWW-Authenticate,
// Location, Content-Length); all but Host when the list is empty.
func (e envoyHTTP) apply(client http.Header, resp *http.Response, body []byte) outcome {
	resp.Header.Del("Date")
	resp.Header.Del("Content-Length")
	ar := e.a.GetHttpService().GetAuthorizationResponse()
	switch {
	case resp.StatusCode == http.StatusOK:
		up := client.Clone()
		if up == nil {
			up = http.Header{}
		}
		var remove []string
		for _, v := range resp.Header.Values(httpfront.HeaderHeadersToRemove) {
			for _, n := range strings.Split(v, ",") {
				if n = strings.TrimSpace(n); n != "" {
					remove = append(remove, n)
				}
			}
		}
		resp.Header.Del(httpfront.HeaderHeadersToRemove)
		for name, values := range resp.Header {
			lower := strings.ToLower(name)
			if e.matches(ar.GetAllowedUpstreamHeaders(), lower) {
				up[http.CanonicalHeaderKey(name)] = slices.Clone(values)
			}
			if e.matches(ar.GetAllowedUpstreamHeadersToAppend(), lower) && up.Get(name) != "" {
				up.Set(name, up.Get(name)+","+strings.Join(values, ","))
			}
		}
		for _, n := range remove {
			if !strings.HasPrefix(n, ":") && !strings.EqualFold(n, "host") {
				up.Del(n)
			}
		}
		return outcome{allowed: true, upstream: up}
	case resp.StatusCode >= 500:
		status := int(e.a.GetStatusOnError().GetCode())
		if status == 0 {
			status = http.StatusForbidden
		}
		return outcome{status: status, header: map[string]string{}}
	default:
		out := outcome{status: resp.StatusCode, header: map[string]string{}, body: string(body)}
		list := ar.GetAllowedClientHeaders()
		for name, values := range resp.Header {
			lower := strings.ToLower(name)
			pass := lower != "host"
			if len(list.GetPatterns()) > 0 {
				pass = e.matches(list, lower) || lower == "www-authenticate" || lower == "location"
			}
			if pass {
				out.header[lower] = strings.Join(values, "\n")
			}
		}
		return out
	}
}

// grpcOutcome is what Envoy makes of the gRPC front's answer: an OK sets
// its headers (overwriting) and removes headers_to_remove; a deny is its
// status, headers and body.
func grpcOutcome(client http.Header, resp *authv3.CheckResponse) outcome {
	if d := resp.GetDeniedResponse(); d != nil {
		out := outcome{status: int(d.GetStatus().GetCode()), header: map[string]string{}, body: d.GetBody()}
		for _, h := range d.GetHeaders() {
			out.header[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		return out
	}
	up := client.Clone()
	if up == nil {
		up = http.Header{}
	}
	for _, h := range resp.GetOkResponse().GetHeaders() {
		up.Set(h.GetHeader().GetKey(), h.GetHeader().GetValue())
	}
	for _, n := range resp.GetOkResponse().GetHeadersToRemove() {
		up.Del(n)
	}
	return outcome{allowed: true, upstream: up}
}

// headerNames lists h's names and value counts, never the values (they
// may be tokens).
func headerNames(h http.Header) string {
	var out []string
	for k, v := range h {
		out = append(out, k+"×"+strconv.Itoa(len(v)))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// TestEnvoyHTTPService sends extauthz's HTTP front the authorization
// requests that Envoy, configured with envoy/envoy-http.yaml, sends for
// each client request of the parity cases, applies Envoy's handling of the
// answers, and compares the result with what Envoy makes of the gRPC
// front's answer (envoy.yaml) for the same request.
func TestEnvoyHTTPService(t *testing.T) {
	e := loadEnvoyHTTP(t)
	rec := &recorder{}
	d := newDeciderWith(rec, false, fixedLinks{}) // with connect links: Link must reach the client
	grpcFront := server.NewAuthorization(d)
	srv := httptest.NewServer(httpfront.New(d, httpfront.Options{}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	for _, tc := range denyCases {
		if tc.o.providers != "" {
			// X-Extauthz-Providers set by the proxy: envoy-http.yaml sets
			// none (a client's is covered below).
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			want, err := grpcFront.Check(context.Background(), tc.o.checkRequest())
			if err != nil {
				t.Fatal(err)
			}
			rec.take()
			resp, body := e.send(addr, "GET", tc.o)
			if got := rec.take(); !reflect.DeepEqual(got, []string{tc.reason}) {
				t.Errorf("decision reasons %v, want [%s]", got, tc.reason)
			}
			got := e.apply(tc.o.headers, resp, body)
			w := grpcOutcome(tc.o.headers, want)
			switch {
			case w.allowed:
				if !got.allowed {
					t.Fatalf("denied %d, allowed over gRPC", got.status)
				}
				if !reflect.DeepEqual(got.upstream, w.upstream) {
					t.Errorf("the backend gets [%s], over gRPC [%s] (or values differ)", headerNames(got.upstream), headerNames(w.upstream))
				}
				assertNoClientCredential(t, tc.o.headers, got.upstream)
			case w.status >= 500:
				// A 5xx answer is an error to Envoy's HTTP client: the client
				// gets status_on_error, without the body and Retry-After that
				// a gRPC deny carries (Envoy issue #14001).
				if got.allowed || got.status != http.StatusServiceUnavailable || got.body != "" || len(got.header) != 0 {
					t.Errorf("got %d, headers %v, body %q; want a bare 503 (status_on_error)", got.status, got.header, got.body)
				}
				if resp.StatusCode != w.status {
					t.Errorf("extauthz answered %d, the gRPC deny is %d", resp.StatusCode, w.status)
				}
			default:
				if !reflect.DeepEqual(got, w) {
					t.Errorf("the client gets %d %v %q; over gRPC %d %v %q", got.status, got.header, got.body, w.status, w.header, w.body)
				}
			}
		})
	}

	// Smuggling: what a client sends besides its JWT never reaches the
	// backend, nor chooses its policy.
	for _, tc := range []struct {
		name string
		o    original
		// wantAuthz, wantGoogle: the backend's Authorization and
		// X-Google-Token ("" absent); status when denied.
		wantAuthz, wantGoogle string
		status                int
	}{
		{"forged provider header on a route that does not set it", original{host: "api.test", path: "/x", headers: withHeaders(bearer("jwt-ok"),
			"X-Google-Token", "Bearer forged", "X-Google-Id-Token", "forged")}, "Bearer " + ghToken, "", 200},
		{"the client's Authorization on a route that does not write it", original{host: "api.test", path: "/google/cal", headers: bearer("jwt-ok")},
			"", "Bearer " + googleToken, 200},
		{"a client's X-Extauthz-Providers is not sent", original{host: "api.test", path: "/x", headers: withHeaders(bearer("jwt-ok"),
			"X-Extauthz-Providers", "google")}, "Bearer " + ghToken, "", 200},
		{"a client cannot skip a route's required scopes", original{host: "api.test", path: "/admin/users", headers: withHeaders(bearer("jwt-ok"),
			"X-Extauthz-Providers", "gh", "X-Extauthz-Required-Scopes", "")}, "", "", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.send(addr, "POST", tc.o)
			rec.take()
			got := e.apply(tc.o.headers, resp, body)
			if !got.allowed {
				if got.status != tc.status {
					t.Errorf("status %d, want %d", got.status, tc.status)
				}
				return
			}
			if tc.status != 200 {
				t.Fatalf("allowed, want %d", tc.status)
			}
			if a := got.upstream.Values("Authorization"); len(a) > 1 || (len(a) == 1) != (tc.wantAuthz != "") || (len(a) == 1 && a[0] != tc.wantAuthz) {
				t.Errorf("the backend gets %d Authorization values, or not the upstream token", len(a))
			}
			if g := got.upstream.Values("X-Google-Token"); len(g) > 1 || (len(g) == 1) != (tc.wantGoogle != "") || (len(g) == 1 && g[0] != tc.wantGoogle) {
				t.Errorf("the backend gets %d X-Google-Token values, or not the upstream token", len(g))
			}
			if got.upstream.Get("X-Google-Id-Token") == "forged" {
				t.Error("a forged X-Google-Id-Token reaches the backend")
			}
			assertNoClientCredential(t, tc.o.headers, got.upstream)
		})
	}
}

// assertNoClientCredential fails when a value of the client's
// Authorization reaches the backend in any header.
func assertNoClientCredential(t *testing.T, client, upstream http.Header) {
	t.Helper()
	for _, c := range client.Values("Authorization") {
		for name, values := range upstream {
			if c != "" && slices.Contains(values, c) {
				t.Errorf("the client's Authorization reaches the backend in %s", name)
			}
		}
	}
}

// withHeaders returns h with the name/value pairs kv added.
func withHeaders(h http.Header, kv ...string) http.Header {
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}
