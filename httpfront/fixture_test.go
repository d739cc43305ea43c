package httpfront_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/jwtauth"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/upstreamtoken"
)

// verifier maps raw tokens to claims; "keys-down" cannot be verified and
// anything else is invalid.
type verifier map[string]jwtauth.Claims

func (v verifier) Verify(_ context.Context, raw string) (jwtauth.Claims, error) {
	if raw == "keys-down" {
		return jwtauth.Claims{}, fmt.Errorf("%w: fetch failed", jwtauth.ErrKeysUnavailable)
	}
	c, ok := v[raw]
	if !ok {
		return jwtauth.Claims{}, fmt.Errorf("%w: bad signature", jwtauth.ErrInvalidToken)
	}
	return c, nil
}

// source answers Lookup from a table keyed by session ID.
type source map[string]lookup

type lookup struct {
	res upstreamtoken.Result
	err error
}

func (s source) Lookup(_ context.Context, sessionID string, _ upstreamtoken.Binding, _ ...string) (upstreamtoken.Result, error) {
	l, ok := s[sessionID]
	if !ok {
		return upstreamtoken.Result{}, fmt.Errorf("%w: no rows", upstreamtoken.ErrSessionNotFound)
	}
	return l.res, l.err
}

type retryHint time.Duration

func (retryHint) Error() string               { return "provider busy" }
func (r retryHint) RetryAfter() time.Duration { return time.Duration(r) }

// recorder is an authz.Observer keeping the reasons of the decisions made.
type recorder struct {
	mu      sync.Mutex
	reasons []string
}

func (r *recorder) Decision(resp authz.Response, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reasons = append(r.reasons, resp.Reason)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.reasons
	r.reasons = nil
	return out
}

// The upstream tokens of the fixture. Tests assert that they appear only
// where they must.
const (
	ghToken     = "gho_upstream_secret"
	googleToken = "ya29.google_secret"
	googleID    = "eyJ.google-id.sig"
)

func creds(failures map[string]error, names ...string) upstreamtoken.Result {
	all := map[string]upstreamtoken.UpstreamCredential{
		"gh":     {AccessToken: ghToken},
		"google": {AccessToken: googleToken, IDToken: googleID},
	}
	res := upstreamtoken.Result{Failures: failures}
	for _, n := range names {
		res.SetCredential(n, all[n])
	}
	return res
}

// newDecider returns a real authz.Decider over fakes: providers gh (in
// authorization) and google (x-google-token, x-google-id-token); routes
// api.test/admin/ (gh, scope admin) and /google/ (google); default gh.
func newDecider(obs authz.Observer, routesOnly bool) *authz.Decider {
	return newDeciderWith(obs, routesOnly, nil)
}

// fixedLinks is an authz.Connector whose link depends only on what it is
// for, so that two fronts deciding one request give the same deny.
type fixedLinks struct{}

func (fixedLinks) ConnectLink(_ context.Context, t authz.ConnectTarget) (authz.ConnectLink, error) {
	return authz.ConnectLink{URI: "https://api.test/.extauthz/connect?ticket=" + t.Provider + "." + t.SessionID, ID: t.SessionID}, nil
}

// newDeciderWith is newDecider with connect links from connect (nil: none).
func newDeciderWith(obs authz.Observer, routesOnly bool, connect authz.Connector) *authz.Decider {
	claims := func(session string, scopes ...string) jwtauth.Claims {
		return jwtauth.Claims{Subject: "alice", ClientID: "app", SessionID: session, Scopes: scopes}
	}
	v := verifier{
		"jwt-ok":        claims("s-ok"),
		"jwt-admin":     claims("s-ok", "admin"),
		"jwt-unknown":   claims("s-unknown"),
		"jwt-binding":   claims("s-binding"),
		"jwt-norefresh": claims("s-norefresh"),
		"jwt-refused":   claims("s-refused"),
		"jwt-store":     claims("s-store"),
		"jwt-busy":      claims("s-busy"),
		"jwt-misconf":   claims("s-misconf"),
		"jwt-crlf":      claims("s-crlf"),
	}
	src := source{
		"s-ok":        {res: creds(nil, "gh", "google")},
		"s-binding":   {err: fmt.Errorf("%w: subject differs", upstreamtoken.ErrInvalidBinding)},
		"s-norefresh": {res: creds(map[string]error{"gh": upstreamtoken.ErrNoRefreshToken})},
		"s-refused":   {res: creds(map[string]error{"gh": fmt.Errorf("%w: invalid_grant", upstreamtoken.ErrRefreshFailed)})},
		"s-store":     {err: fmt.Errorf("%w: %w", upstreamtoken.ErrUpstreamUnavailable, store.ErrUnavailable)},
		"s-busy":      {res: creds(map[string]error{"gh": fmt.Errorf("%w: %w", upstreamtoken.ErrUpstreamUnavailable, retryHint(7*time.Second))})},
		"s-misconf":   {res: creds(map[string]error{"gh": fmt.Errorf("%w: %w", upstreamtoken.ErrUpstreamUnavailable, upstreamtoken.ErrProviderMisconfigured)})},
		"s-crlf": {res: func() (r upstreamtoken.Result) {
			r.SetCredential("gh", upstreamtoken.UpstreamCredential{AccessToken: "evil\r\nx-injected: 1"})
			return r
		}()},
	}
	return authz.New(authz.Config{
		Providers: map[string]authz.Provider{
			"gh":     {},
			"google": {Header: "x-google-token", IDTokenHeader: "x-google-id-token"},
		},
		DefaultProviders: []string{"gh"},
		Routes: []authz.Route{
			{Host: "api.test", PathPrefix: "/admin/", Providers: []string{"gh"}, RequiredScopes: []string{"admin"}},
			{PathPrefix: "/google/", Providers: []string{"google"}},
		},
		RoutesOnly:       routesOnly,
		Realm:            "api",
		ResourceMetadata: "https://api.test/.well-known/oauth-protected-resource",
		Observer:         obs,
		Connect:          connect,
	}, v, src, nil)
}

// original is a request a client sent to the proxy, as the proxy describes
// it to the authorization service.
type original struct {
	host, path string
	// headers are the client's headers the proxy forwards (for Envoy: the
	// allowed ones), possibly with several values.
	headers http.Header
	// providers is what the proxy puts in X-Extauthz-Providers ("": none).
	providers string
}

func bearer(tokens ...string) http.Header {
	h := http.Header{}
	for _, t := range tokens {
		h.Add("Authorization", "Bearer "+t)
	}
	return h
}

// forwardAuth builds the subrequest nginx sends for o.
func (o original) forwardAuth(base string) *http.Request {
	req, err := http.NewRequest("GET", base+"/auth", nil)
	if err != nil {
		panic(err)
	}
	req.Header = o.headers.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Host = "extauthz.internal:9002"
	req.Header.Set("X-Original-URI", o.path)
	req.Header.Set("X-Forwarded-Host", o.host)
	if o.providers != "" {
		req.Header.Set("X-Extauthz-Providers", o.providers)
	}
	return req
}

// envoy builds the request Envoy's http_service sends for o: the original
// method and :authority, the prefix before the original path.
func (o original) envoy(base string) *http.Request {
	req, err := http.NewRequest("GET", base, nil)
	if err != nil {
		panic(err)
	}
	req.URL.Opaque = "/envoy" + o.path // sent as the request target as it is
	req.Header = o.headers.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Host = o.host
	if o.providers != "" {
		req.Header.Set("X-Extauthz-Providers", o.providers)
	}
	return req
}

// lowerHeaders is a response's headers, names lower-cased, without the ones
// the HTTP server adds on its own.
func lowerHeaders(h http.Header) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		switch k {
		case "Date", "Content-Length":
			continue
		}
		out[strings.ToLower(k)] = strings.Join(v, "\n")
	}
	return out
}
