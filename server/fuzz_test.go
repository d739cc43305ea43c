package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/jwtauth"
	"github.com/extauthz/extauthz/upstreamtoken"
)

// fuzzVerifier maps a raw token "jwt-<session>" to claims for that session
// (subject "alice", or "mallory" for "jwt-mallory"); "keys-down" cannot be
// decided and anything else is invalid.
type fuzzVerifier struct{}

func (fuzzVerifier) Verify(_ context.Context, raw string) (jwtauth.Claims, error) {
	switch {
	case raw == "keys-down":
		return jwtauth.Claims{}, fmt.Errorf("%w: fetch failed", jwtauth.ErrKeysUnavailable)
	case raw == "jwt-mallory":
		return jwtauth.Claims{Subject: "mallory", ClientID: "app", SessionID: "s-ok"}, nil
	case strings.HasPrefix(raw, "jwt-") && len(raw) > len("jwt-"):
		return jwtauth.Claims{Subject: "alice", ClientID: "app", SessionID: strings.TrimPrefix(raw, "jwt-"), Scopes: []string{"read"}}, nil
	}
	return jwtauth.Claims{}, fmt.Errorf("%w: bad signature", jwtauth.ErrInvalidToken)
}

type fuzzRetryHint struct{ d time.Duration }

func (r fuzzRetryHint) Error() string             { return "provider busy" }
func (r fuzzRetryHint) RetryAfter() time.Duration { return r.d }

// fuzzSource is an in-memory authz.CredentialSource: per session, for each
// provider either a credential or a failure. Every session is bound to
// alice/app. Session "s-down" stands for an unreachable store.
type fuzzSource map[string]map[string]fuzzOutcome

type fuzzOutcome struct {
	cred upstreamtoken.UpstreamCredential
	err  error
}

func (s fuzzSource) Lookup(_ context.Context, sessionID string, b upstreamtoken.Binding, providers ...string) (upstreamtoken.Result, error) {
	if sessionID == "s-down" {
		return upstreamtoken.Result{}, fmt.Errorf("%w: store unreachable", upstreamtoken.ErrUpstreamUnavailable)
	}
	rows, ok := s[sessionID]
	if !ok {
		return upstreamtoken.Result{}, upstreamtoken.ErrSessionNotFound
	}
	if b.Subject != "alice" || b.ClientID != "app" {
		return upstreamtoken.Result{}, upstreamtoken.ErrInvalidBinding
	}
	res := upstreamtoken.Result{Failures: map[string]error{}}
	for _, p := range providers {
		o, ok := rows[p]
		switch {
		case !ok:
			res.Failures[p] = fmt.Errorf("%w: no tokens for provider", upstreamtoken.ErrSessionNotFound)
		case o.err != nil:
			res.Failures[p] = o.err
		default:
			res.SetCredential(p, o.cred)
		}
	}
	return res, nil
}

func newFuzzDecider() *authz.Decider {
	ok := func(access, id string) fuzzOutcome {
		return fuzzOutcome{cred: upstreamtoken.UpstreamCredential{AccessToken: access, IDToken: id}}
	}
	fail := func(err error) fuzzOutcome { return fuzzOutcome{err: err} }
	source := fuzzSource{
		"s-ok":     {"gh": ok("gh-access", ""), "google": ok("g-access", "g-id"), "okta": ok("okta-access", "")},
		"s-crlf":   {"gh": ok("evil\r\nx-injected: 1", ""), "google": ok("g-access", "id\x00"), "okta": ok("okta\naccess", "")},
		"s-idcrlf": {"gh": ok("gh-access", ""), "google": ok("g-access", "id\r\nx: 1")},
		"s-busy":   {"gh": fail(fmt.Errorf("%w: %w", upstreamtoken.ErrUpstreamUnavailable, fuzzRetryHint{7 * time.Second})), "google": ok("g-access", "")},
		"s-refused": {"gh": fail(fmt.Errorf("%w: invalid_grant", upstreamtoken.ErrRefreshFailed)),
			"google": fail(upstreamtoken.ErrUpstreamUnavailable)},
		"s-norefresh": {"gh": fail(upstreamtoken.ErrNoRefreshToken)},
	}
	return authz.New(authz.Config{
		Providers: map[string]authz.Provider{
			"gh":     {},
			"gitlab": {},
			"google": {Header: "x-google-token", IDTokenHeader: "x-google-id"},
			"okta":   {Header: "x-okta", IDTokenHeader: "x-okta-id"},
		},
		DefaultProviders: []string{"gh"},
		Routes: []authz.Route{
			{PathPrefix: "/google/", Providers: []string{"google"}, RequiredScopes: []string{"read"}},
			{Host: "api.example", PathPrefix: "/admin/", RequiredScopes: []string{"admin"}},
			{PathPrefix: "/two/", Providers: []string{"gh", "gitlab"}},
		},
		Realm:            "api",
		ResourceMetadata: "https://api.example/.well-known/oauth-protected-resource",
	}, fuzzVerifier{}, source, nil)
}

func fuzzHasCtl(s string) bool { return strings.ContainsAny(s, "\r\n\x00") }

// FuzzCheckRequest decodes arbitrary bytes as a CheckRequest and runs it
// through the whole decision (FromCheckRequest, authz.Decider.Check,
// ToCheckResponse) with a fake verifier and credential source. It must not
// panic, and the response must be either OK, with no header both set and
// removed and no header value holding CR, LF or NUL, or a deny with status
// 401, 403, 500, 502 or 503 and a JSON object body. The gRPC method gives the
// same answer, or InvalidArgument when the request has no HTTP attributes.
func FuzzCheckRequest(f *testing.F) {
	seedAt := func(path string, headers map[string]string, ext map[string]string, raw ...*corev3.HeaderValue) {
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			ContextExtensions: ext,
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: path, Host: "api.example", Headers: headers,
			}},
		}}
		if len(raw) > 0 {
			req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: raw}
		}
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed := func(headers map[string]string, ext map[string]string, raw ...*corev3.HeaderValue) {
		seedAt("/api", headers, ext, raw...)
	}
	auth := func(v string) map[string]string { return map[string]string{"authorization": v} }
	route := func(p string) map[string]string { return map[string]string{authz.ContextKeyProviders: p} }
	seed(nil, nil)
	seed(auth("Bearer jwt-s-ok"), nil)
	seed(auth("Bearer jwt-s-ok"), route("google"))
	seed(auth("Bearer jwt-s-ok"), route("gh, google ,okta"))
	seed(map[string]string{"Authorization": "bearer jwt-s-ok", "x-google-token": "Bearer forged", "x-okta-id": "forged"}, route("okta"))
	seed(auth("Bearer jwt-s-crlf"), nil)
	seed(auth("Bearer jwt-s-crlf"), route("google"))
	seed(auth("Bearer jwt-s-idcrlf"), route("google"))
	seed(auth("Bearer jwt-s-busy"), nil)
	seed(auth("Bearer jwt-s-busy"), route("gh,google"))
	seed(auth("Bearer jwt-s-refused"), route("gh,google"))
	seed(auth("Bearer jwt-s-norefresh"), nil)
	seed(auth("Bearer jwt-s-down"), nil)
	seed(auth("Bearer jwt-s-unknown"), nil)
	seed(auth("Bearer jwt-mallory"), nil)
	seed(auth("Bearer keys-down"), nil)
	seed(auth("Bearer garbage"), nil)
	seed(auth("Bearer "), nil)
	seed(auth("Basic YWxpY2U6cHc="), nil)
	seed(auth("Bearer jwt-s-ok"), route("gh,nope"))
	seed(auth("Bearer jwt-s-ok"), route("gh,gitlab"))
	seed(auth("Bearer jwt-s-ok"), route(" , "))
	seed(nil, route("google"), &corev3.HeaderValue{Key: "Authorization", RawValue: []byte("Bearer jwt-s-ok")})
	seed(auth("Bearer garbage"), nil, &corev3.HeaderValue{Key: "authorization", Value: "Bearer jwt-s-ok"})
	seed(auth("Bearer jwt-s-ok"), map[string]string{authz.ContextKeyRequiredScopes: "read"})
	seed(auth("Bearer jwt-s-ok"), map[string]string{authz.ContextKeyRequiredScopes: "read write"})
	seed(auth("Bearer jwt-s-ok"), map[string]string{authz.ContextKeyRequiredScopes: "re\"ad"})
	seedAt("/google/x?y=1", auth("Bearer jwt-s-ok"), nil)
	seedAt("/%61dmin/../admin/x", auth("Bearer jwt-s-ok"), nil)
	seedAt("/two/x", auth("Bearer jwt-s-ok"), nil)
	seedAt("/admin/x", auth("Bearer jwt-s-ok"), route("okta"))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00})

	d := newFuzzDecider()
	srv := NewAuthorization(d)
	denyStatus := map[int32]bool{401: true, 403: true, 500: true, 502: true, 503: true}

	f.Fuzz(func(t *testing.T, b []byte) {
		var req authv3.CheckRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			t.Skip()
		}
		resp := ToCheckResponse(d.Check(t.Context(), FromCheckRequest(&req)))

		for _, h := range append(resp.GetOkResponse().GetHeaders(), resp.GetDeniedResponse().GetHeaders()...) {
			if fuzzHasCtl(h.GetHeader().GetKey()) || fuzzHasCtl(h.GetHeader().GetValue()) {
				t.Fatalf("header %q: %q holds CR, LF or NUL", h.GetHeader().GetKey(), h.GetHeader().GetValue())
			}
		}
		switch {
		case resp.GetOkResponse() != nil:
			if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
				t.Fatalf("OK response with status %v", resp.GetStatus())
			}
			removed := map[string]bool{}
			for _, n := range resp.GetOkResponse().GetHeadersToRemove() {
				removed[n] = true
			}
			for _, h := range resp.GetOkResponse().GetHeaders() {
				if removed[h.GetHeader().GetKey()] {
					t.Fatalf("header %q both set and removed", h.GetHeader().GetKey())
				}
				//lint:ignore SA1019 older Envoys read the deprecated append field.
				if h.GetAppend().GetValue() || h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
					t.Fatalf("header %q does not overwrite", h.GetHeader().GetKey())
				}
			}
		case resp.GetDeniedResponse() != nil:
			deny := resp.GetDeniedResponse()
			if st := int32(deny.GetStatus().GetCode()); !denyStatus[st] {
				t.Fatalf("deny with HTTP status %d", st)
			}
			if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
				t.Fatal("deny with gRPC status OK")
			}
			var body map[string]any
			if err := json.Unmarshal([]byte(deny.GetBody()), &body); err != nil {
				t.Fatalf("deny body %q is not a JSON object: %v", deny.GetBody(), err)
			}
			if _, ok := body["error"].(string); !ok {
				t.Fatalf("deny body %q has no error code", deny.GetBody())
			}
		default:
			t.Fatalf("response is neither OK nor a deny: %v", resp)
		}

		got, err := srv.Check(t.Context(), &req)
		if req.GetAttributes().GetRequest().GetHttp() == nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("no HTTP attributes: Check = %v, %v; want InvalidArgument", got, err)
			}
			return
		}
		if err != nil || !proto.Equal(got, resp) {
			t.Fatalf("Check = %v, %v\nwant %v", got, err, resp)
		}
	})
}
