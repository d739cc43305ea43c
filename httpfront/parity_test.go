package httpfront_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/httpfront"
	"github.com/extauthz/extauthz/server"
)

// denyCases cover every row of the deny table, and allows, as a client's
// request described by the proxy.
var denyCases = []struct {
	name   string
	o      original
	status int
	reason string
}{
	{"no authorization", original{host: "api.test", path: "/x"}, 401, "no_token"},
	{"basic scheme", original{host: "api.test", path: "/x", headers: http.Header{"Authorization": {"Basic YTpi"}}}, 401, "no_token"},
	{"empty bearer", original{host: "api.test", path: "/x", headers: http.Header{"Authorization": {"Bearer "}}}, 401, "invalid_token"},
	{"invalid jwt", original{host: "api.test", path: "/x", headers: bearer("forged")}, 401, "invalid_token"},
	{"keys unavailable", original{host: "api.test", path: "/x", headers: bearer("keys-down")}, 503, "keys_unavailable"},
	{"session unknown", original{host: "api.test", path: "/x", headers: bearer("jwt-unknown")}, 401, "session_not_found"},
	{"binding mismatch", original{host: "api.test", path: "/x", headers: bearer("jwt-binding")}, 401, "binding_mismatch"},
	{"no refresh token", original{host: "api.test", path: "/x", headers: bearer("jwt-norefresh")}, 401, "no_refresh_token"},
	{"refresh refused", original{host: "api.test", path: "/x", headers: bearer("jwt-refused")}, 401, "refresh_failed"},
	{"insufficient scope", original{host: "API.test:443", path: "/admin/users?x=1", headers: bearer("jwt-ok")}, 403, "insufficient_scope"},
	{"store unavailable", original{host: "api.test", path: "/x", headers: bearer("jwt-store")}, 503, "store_unavailable"},
	{"provider busy", original{host: "api.test", path: "/x", headers: bearer("jwt-busy")}, 503, "provider_unavailable"},
	{"provider misconfigured", original{host: "api.test", path: "/x", headers: bearer("jwt-misconf")}, 503, "provider_misconfigured"},
	{"route names an unknown provider", original{host: "api.test", path: "/x", headers: bearer("jwt-ok"), providers: "nope"}, 500, "route_misconfigured"},
	{"unsafe upstream token", original{host: "api.test", path: "/x", headers: bearer("jwt-crlf")}, 502, "unsafe_token"},
	{"two authorization headers", original{host: "api.test", path: "/x", headers: bearer("jwt-ok", "jwt-admin")}, 401, "invalid_token"},
	{"authorization twice, first empty", original{host: "api.test", path: "/x", headers: http.Header{"Authorization": {"", "Bearer jwt-ok"}}}, 401, "no_token"},
	{"allow by default", original{host: "api.test", path: "/x", headers: bearer("jwt-ok")}, 200, "ok"},
	{"allow with scope", original{host: "api.test", path: "/admin/users", headers: bearer("jwt-admin")}, 200, "ok"},
	{"allow by route", original{host: "other.test", path: "/google/cal", headers: bearer("jwt-ok")}, 200, "ok"},
	{"allow by proxy header", original{host: "api.test", path: "/x", headers: bearer("jwt-ok"), providers: "gh, google"}, 200, "ok"},
	{"proxy header skips the route's scopes", original{host: "api.test", path: "/admin/", headers: bearer("jwt-ok"), providers: "gh"}, 200, "ok"},
}

// checkRequest is the CheckRequest Envoy's gRPC client sends for o: its
// headers lower-cased with repeated values joined by ",", the providers
// header as the upstream_providers context extension.
func (o original) checkRequest() *authv3.CheckRequest {
	headers := map[string]string{}
	for k, v := range o.headers {
		headers[strings.ToLower(k)] = strings.Join(v, ",")
	}
	var ext map[string]string
	if o.providers != "" {
		ext = map[string]string{authz.ContextKeyProviders: o.providers}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		ContextExtensions: ext,
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: o.host, Path: o.path, Headers: headers,
		}},
	}}
}

// TestSameAnswerAsGRPC runs each case through the gRPC front and through
// both HTTP shapes, with one decider, and compares what the proxy gets: the
// deny's status, headers and body byte for byte; the allow's headers to set
// and (Envoy) to remove.
//
// It runs without and with connect links: with them, the denies for a
// missing or dead grant carry the same connect_uri and Link on every front.
func TestSameAnswerAsGRPC(t *testing.T) {
	for _, connect := range []authz.Connector{nil, fixedLinks{}} {
		t.Run(fmt.Sprintf("connect=%v", connect != nil), func(t *testing.T) { sameAnswerAsGRPC(t, connect) })
	}
}

func sameAnswerAsGRPC(t *testing.T, connect authz.Connector) {
	rec := &recorder{}
	d := newDeciderWith(rec, false, connect)
	grpcFront := server.NewAuthorization(d)
	srv := httptest.NewServer(httpfront.New(d, httpfront.Options{}))
	defer srv.Close()

	links := 0
	for _, tc := range denyCases {
		t.Run(tc.name, func(t *testing.T) {
			want, err := grpcFront.Check(context.Background(), tc.o.checkRequest())
			if err != nil {
				t.Fatal(err)
			}
			if got := rec.take(); !reflect.DeepEqual(got, []string{tc.reason}) {
				t.Fatalf("gRPC decision reasons %v, want [%s]", got, tc.reason)
			}
			wantHeaders := map[string]string{}
			hs := want.GetOkResponse().GetHeaders()
			if d := want.GetDeniedResponse(); d != nil {
				hs = d.GetHeaders()
			}
			for _, h := range hs {
				wantHeaders[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			}
			if _, ok := wantHeaders["link"]; ok {
				links++
			}

			for shape, req := range map[string]*http.Request{
				"forward auth": tc.o.forwardAuth(srv.URL),
				"envoy":        tc.o.envoy(srv.URL),
			} {
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if got := rec.take(); !reflect.DeepEqual(got, []string{tc.reason}) {
					t.Errorf("%s: decision reasons %v, want [%s]", shape, got, tc.reason)
				}
				if resp.StatusCode != tc.status {
					t.Errorf("%s: status %d, want %d (body %s)", shape, resp.StatusCode, tc.status, body)
				}
				got := lowerHeaders(resp.Header)
				if d := want.GetDeniedResponse(); d != nil {
					if int(d.GetStatus().GetCode()) != resp.StatusCode {
						t.Errorf("%s: status %d, gRPC deny %d", shape, resp.StatusCode, d.GetStatus().GetCode())
					}
					if string(body) != d.GetBody() {
						t.Errorf("%s: body %q, gRPC deny body %q", shape, body, d.GetBody())
					}
					if !reflect.DeepEqual(got, wantHeaders) {
						t.Errorf("%s: headers %v, gRPC deny headers %v", shape, got, wantHeaders)
					}
					continue
				}
				if len(body) != 0 {
					t.Errorf("%s: allowed with a body %q", shape, body)
				}
				removed := got["x-envoy-auth-headers-to-remove"]
				delete(got, "x-envoy-auth-headers-to-remove")
				if !reflect.DeepEqual(got, wantHeaders) {
					t.Errorf("%s: headers %v, gRPC OK headers %v", shape, got, wantHeaders)
				}
				wantRemoved := strings.Join(want.GetOkResponse().GetHeadersToRemove(), ",")
				if shape == "forward auth" {
					wantRemoved = ""
				}
				if removed != wantRemoved {
					t.Errorf("%s: headers to remove %q, want %q", shape, removed, wantRemoved)
				}
			}
		})
	}
	// With connect, the session unknown, no refresh token and refresh
	// refused rows carry a link; the binding mismatch does not.
	if want := map[bool]int{false: 0, true: 3}[connect != nil]; links != want {
		t.Errorf("%d denies carry a connect link, want %d", links, want)
	}
	// Every deny row is covered.
	var reasons []string
	for _, tc := range denyCases {
		reasons = append(reasons, tc.reason)
	}
	for _, r := range []string{"no_token", "invalid_token", "session_not_found", "binding_mismatch", "no_refresh_token",
		"refresh_failed", "insufficient_scope", "keys_unavailable", "store_unavailable", "provider_unavailable",
		"provider_misconfigured", "route_misconfigured", "unsafe_token", "ok"} {
		if !slices.Contains(reasons, r) {
			t.Errorf("no case for %s", r)
		}
	}
}
