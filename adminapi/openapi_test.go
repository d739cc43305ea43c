package adminapi_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	verrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/paths"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
	"github.com/pb33f/libopenapi/orderedmap"

	"github.com/extauthz/extauthz/adminapi"
	"github.com/extauthz/extauthz/store"
)

// openAPI is the embedded document, parsed once for every test of the
// package: its model, a validator of requests and responses and one of
// values against a schema (both asserting formats such as date-time).
type openAPI struct {
	model   *v3.Document
	http    validator.Validator
	schemas schema_validation.SchemaValidator
	opts    *config.ValidationOptions
	// problems are the document's own errors (libopenapi's model and the
	// OpenAPI 3.1 schema), checked by TestOpenAPIDocumentIsValid.
	problems []string
}

var loadOpenAPI = sync.OnceValues(func() (*openAPI, error) {
	doc, err := libopenapi.NewDocument(adminapi.OpenAPI())
	if err != nil {
		return nil, err
	}
	opts := []config.Option{config.WithFormatAssertions(), config.WithAuthenticationFunc(authenticated)}
	v, errs := validator.NewValidator(doc, opts...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	o := &openAPI{http: v, schemas: schema_validation.NewSchemaValidator(opts...), opts: config.NewValidationOptions(opts...)}
	if _, verrs := v.ValidateDocument(); len(verrs) > 0 {
		o.problems = describe(verrs)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		return nil, err
	}
	o.model = &m.Model
	return o, nil
})

func theDocument(t *testing.T) *openAPI {
	t.Helper()
	o, err := loadOpenAPI()
	if err != nil {
		t.Fatalf("the OpenAPI document does not load: %v", err)
	}
	return o
}

// authenticated is the validator's reading of the document's security
// schemes: a bearer token in Authorization, or a client certificate.
func authenticated(_ context.Context, in *config.AuthenticationInput) error {
	switch in.SecurityScheme.Type {
	case "http":
		scheme, _, _ := strings.Cut(in.Request.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return errors.New("no bearer token")
		}
	case "mutualTLS":
		if in.Request.TLS == nil || len(in.Request.TLS.PeerCertificates) == 0 {
			return errors.New("no client certificate")
		}
	default:
		return fmt.Errorf("security scheme type %q is not expected", in.SecurityScheme.Type)
	}
	return nil
}

// describe renders validation errors for a test failure, without the
// validated values (which may be long or hold test tokens).
func describe(errs []*verrors.ValidationError) []string {
	var out []string
	for _, e := range errs {
		s := e.Message + ": " + e.Reason
		for _, f := range e.SchemaValidationErrors {
			s += fmt.Sprintf(" [%s at %s (%s)]", f.Reason, f.FieldPath, f.KeywordLocation)
		}
		for _, secret := range []string{secretAccess, secretRefresh, secretID} {
			s = strings.ReplaceAll(s, secret, "[token]")
		}
		if len(s) > 600 {
			s = s[:600] + "..."
		}
		out = append(out, s)
	}
	return out
}

// conforms checks an answer of the handler against the document (status,
// content type, body schema, required headers) and, for a 2xx answer, the
// request too (the handler accepted it: the document must as well). It
// records the answer's route and status in f.seen.
func (f *fixture) conforms(t *testing.T, req *http.Request, body string, a answer) {
	t.Helper()
	o := theDocument(t)
	newReq := func() *http.Request {
		r := httptest.NewRequest(req.Method, req.URL.String(), strings.NewReader(body))
		r.Header = req.Header.Clone()
		r.TLS = req.TLS
		return r
	}
	vreq := newReq()
	_, _, template := paths.FindPath(vreq, o.model, o.opts)
	if template == "" {
		t.Errorf("%s %s: no route of the OpenAPI document", req.Method, req.URL.Path)
		return
	}
	f.seen[routeStatus{req.Method, template, a.status}] = true
	resp := &http.Response{StatusCode: a.status, Header: a.header, Body: io.NopCloser(strings.NewReader(a.body)), Request: vreq}
	if ok, errs := o.http.ValidateHttpResponse(vreq, resp); !ok {
		t.Errorf("%s %s answered %d, which the OpenAPI document does not describe:\n%s",
			req.Method, template, a.status, strings.Join(describe(errs), "\n"))
	}
	// A PUT without Content-Type is taken as JSON, a leniency the
	// document (which names application/json) does not describe.
	if a.status < 300 && (body == "" || req.Header.Get("Content-Type") != "") {
		if ok, errs := o.http.ValidateHttpRequestSync(newReq()); !ok {
			t.Errorf("%s %s: the handler accepted a request the OpenAPI document refuses:\n%s",
				req.Method, template, strings.Join(describe(errs), "\n"))
		}
	}
}

// routeStatus is one documented answer: an operation and a status.
type routeStatus struct {
	method, path string
	status       int
}

func (r routeStatus) String() string { return fmt.Sprintf("%s %s %d", r.method, r.path, r.status) }

func TestOpenAPIDocumentIsValid(t *testing.T) {
	o := theDocument(t)
	if len(o.problems) > 0 {
		t.Fatalf("the document is not valid OpenAPI 3.1:\n%s", strings.Join(o.problems, "\n"))
	}
	if o.model.Version != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", o.model.Version)
	}
	// The routes are the handler's (see the package comment), each with
	// an operationId.
	var got []string
	for path, item := range o.model.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			got = append(got, strings.ToUpper(method)+" "+path)
			if op.OperationId == "" {
				t.Errorf("%s %s has no operationId", method, path)
			}
		}
	}
	slices.Sort(got)
	want := []string{
		"DELETE /v1/sessions/{session}",
		"DELETE /v1/sessions/{session}/providers/{provider}",
		"GET /v1/openapi.json",
		"GET /v1/sessions/{session}",
		"GET /v1/sessions/{session}/providers/{provider}",
		"PUT /v1/sessions/{session}/providers/{provider}",
	}
	if !slices.Equal(got, want) {
		t.Errorf("routes %q, want %q", got, want)
	}
	for _, name := range []string{"bearerAuth", "mutualTLS"} {
		if o.model.Components.SecuritySchemes.GetOrZero(name) == nil {
			t.Errorf("security scheme %s missing", name)
		}
	}
}

// TestOpenAPIExamplesValidate: every example of the document (request
// bodies, responses, parameters, headers, schemas) validates against its
// schema, and every request body and response content has at least one.
func TestOpenAPIExamplesValidate(t *testing.T) {
	o := theDocument(t)
	count := 0
	check := func(where string, schema *base.SchemaProxy, example *base.Example) {
		t.Helper()
		if example == nil || example.Value == nil {
			t.Errorf("%s: an example without a value", where)
			return
		}
		var v any
		if err := example.Value.Decode(&v); err != nil {
			t.Errorf("%s: %v", where, err)
			return
		}
		count++
		if ok, errs := o.schemas.ValidateSchemaObject(schema.Schema(), v); !ok {
			t.Errorf("%s: the example does not validate:\n%s", where, strings.Join(describe(errs), "\n"))
		}
	}
	examples := func(where string, schema *base.SchemaProxy, one *base.Example, many *orderedmap.Map[string, *base.Example], required bool) {
		t.Helper()
		if one != nil {
			check(where+" example", schema, one)
		}
		for name, ex := range many.FromOldest() {
			check(where+" examples."+name, schema, ex)
		}
		if required && one == nil && many.Len() == 0 {
			t.Errorf("%s has no example", where)
		}
	}
	content := func(where string, c *orderedmap.Map[string, *v3.MediaType]) {
		for mt, m := range c.FromOldest() {
			var one *base.Example
			if m.Example != nil {
				one = &base.Example{Value: m.Example}
			}
			examples(where+" "+mt, m.Schema, one, m.Examples, true)
		}
	}
	param := func(where string, p *v3.Parameter) {
		var one *base.Example
		if p.Example != nil {
			one = &base.Example{Value: p.Example}
		}
		examples(where+" parameter "+p.Name, p.Schema, one, p.Examples, false)
	}
	response := func(where string, r *v3.Response) {
		content(where, r.Content)
		for name, h := range r.Headers.FromOldest() {
			var one *base.Example
			if h.Example != nil {
				one = &base.Example{Value: h.Example}
			}
			examples(where+" header "+name, h.Schema, one, h.Examples, false)
		}
	}
	for path, item := range o.model.Paths.PathItems.FromOldest() {
		for _, p := range item.Parameters {
			param(path, p)
		}
		for method, op := range item.GetOperations().FromOldest() {
			where := strings.ToUpper(method) + " " + path
			for _, p := range op.Parameters {
				param(where, p)
			}
			if op.RequestBody != nil {
				content(where+" request", op.RequestBody.Content)
			}
			for code, r := range op.Responses.Codes.FromOldest() {
				response(where+" "+code, r)
			}
		}
	}
	c := o.model.Components
	for name, r := range c.Responses.FromOldest() {
		response("components.responses."+name, r)
	}
	for name, p := range c.Parameters.FromOldest() {
		param("components.parameters."+name, p)
	}
	for name, s := range c.Schemas.FromOldest() {
		for i, ex := range s.Schema().Examples {
			check(fmt.Sprintf("components.schemas.%s examples[%d]", name, i), s, &base.Example{Value: ex})
		}
	}
	if count < 20 {
		t.Errorf("only %d examples checked", count)
	}
}

// TestOpenAPILimitsAreTheCode: the document states the limits of input.go,
// and it accepts and refuses the bodies DecodeSessionWrite and Row do.
func TestOpenAPILimitsAreTheCode(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas struct {
				Name, Token struct {
					MaxLength int `json:"maxLength"`
				}
				SessionWrite struct {
					Properties struct {
						ExpiresIn struct {
							Maximum int `json:"maximum"`
						} `json:"expires_in"`
					} `json:"properties"`
				}
			} `json:"schemas"`
			Parameters struct {
				Session struct {
					Schema struct {
						MaxLength int `json:"maxLength"`
					} `json:"schema"`
				} `json:"session"`
			} `json:"parameters"`
		} `json:"components"`
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(adminapi.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	s := doc.Components.Schemas
	for _, c := range []struct {
		name      string
		doc, code int
	}{
		{"components.schemas.Name.maxLength", s.Name.MaxLength, adminapi.MaxNameBytes},
		{"components.parameters.session.schema.maxLength", doc.Components.Parameters.Session.Schema.MaxLength, adminapi.MaxNameBytes},
		{"components.schemas.Token.maxLength", s.Token.MaxLength, adminapi.MaxTokenBytes},
		{"SessionWrite expires_in maximum", s.SessionWrite.Properties.ExpiresIn.Maximum, adminapi.MaxExpiresIn},
	} {
		if c.doc != c.code {
			t.Errorf("%s is %d, the code's limit is %d", c.name, c.doc, c.code)
		}
	}
	put := doc.Paths["/v1/sessions/{session}/providers/{provider}"]["put"]
	if !bytes.Contains(put, []byte(strconv.Itoa(adminapi.MaxBodyBytes)+" bytes")) {
		t.Errorf("the PUT's request body does not state MaxBodyBytes (%d bytes)", adminapi.MaxBodyBytes)
	}

	// The same bodies, judged by the document and by the code.
	o := theDocument(t)
	schema := o.model.Components.Schemas.GetOrZero("SessionWrite").Schema()
	tok := func(n int) string { return strings.Repeat("t", n) }
	for _, tc := range []struct {
		name string
		over map[string]any
	}{
		{"every member", nil},
		{"names at the limit", map[string]any{"subject": tok(adminapi.MaxNameBytes), "client_id": tok(adminapi.MaxNameBytes), "upstream_subject": tok(adminapi.MaxNameBytes)}},
		{"subject over the limit", map[string]any{"subject": tok(adminapi.MaxNameBytes + 1)}},
		{"upstream_subject over the limit", map[string]any{"upstream_subject": tok(adminapi.MaxNameBytes + 1)}},
		{"tokens at the limit", map[string]any{"access_token": tok(adminapi.MaxTokenBytes), "refresh_token": tok(adminapi.MaxTokenBytes), "id_token": tok(adminapi.MaxTokenBytes)}},
		{"access token over the limit", map[string]any{"access_token": tok(adminapi.MaxTokenBytes + 1)}},
		{"ID token over the limit", map[string]any{"id_token": tok(adminapi.MaxTokenBytes + 1)}},
		{"expires_in at the limit", map[string]any{"expires_in": adminapi.MaxExpiresIn}},
		{"expires_in over the limit", map[string]any{"expires_in": adminapi.MaxExpiresIn + 1}},
		{"expires_in negative", map[string]any{"expires_in": -1}},
		{"expires_in zero", map[string]any{"expires_in": 0}},
		{"expires_in a string", map[string]any{"expires_in": "60"}},
		{"expires_in a fraction", map[string]any{"expires_in": 1.5}},
		{"expires_at instead", map[string]any{"expires_in": nil, "expires_at": "2026-12-05T11:00:00.5+02:00"}},
		{"expires_at and expires_in", map[string]any{"expires_at": "2026-12-05T11:00:00Z"}},
		{"expires_at not RFC 3339", map[string]any{"expires_in": nil, "expires_at": "2026-12-05 11:00"}},
		{"session_expires_at not RFC 3339", map[string]any{"session_expires_at": "tomorrow"}},
		{"session_expires_at no such day", map[string]any{"session_expires_at": "2026-02-30T10:00:00Z"}},
		{"session_expires_at before 1970", map[string]any{"session_expires_at": "1969-12-31T23:59:59Z"}},
		{"session_expires_at in 1970", map[string]any{"session_expires_at": "1970-01-01T00:00:00+01:00"}},
		{"expires_at in 9999", map[string]any{"expires_in": nil, "expires_at": "9999-12-31T23:59:59Z"}},
		{"expires_at without a zone", map[string]any{"expires_in": nil, "expires_at": "2026-12-05T11:00:00"}},
		{"neither expiry", map[string]any{"expires_in": nil}},
		{"only the required members", map[string]any{"refresh_token": nil, "id_token": nil, "expires_in": nil, "session_expires_at": nil, "upstream_subject": nil}},
		{"no access token", map[string]any{"access_token": nil}},
		{"empty access token", map[string]any{"access_token": ""}},
		{"empty refresh token", map[string]any{"refresh_token": ""}},
		{"no subject", map[string]any{"subject": nil}},
		{"empty client_id", map[string]any{"client_id": ""}},
		{"subject with a control character", map[string]any{"subject": "al\x07ice"}},
		{"subject with a C1 control character", map[string]any{"client_id": "app\u0085"}},
		{"subject in another script", map[string]any{"subject": "ユーザー"}},
		{"token with a space", map[string]any{"access_token": "a b"}},
		{"token with a newline", map[string]any{"refresh_token": "a\nb"}},
		{"token not ASCII", map[string]any{"id_token": "tökén"}},
		{"token_type", map[string]any{"token_type": "DPoP"}},
		{"token_type at the limit", map[string]any{"token_type": tok(64)}},
		{"token_type over the limit", map[string]any{"token_type": tok(65)}},
		{"token_type with a space", map[string]any{"token_type": "mac token"}},
		{"unknown member", map[string]any{"scope": "repo"}},
		{"member in capitals", map[string]any{"access_token": nil, "ACCESS_TOKEN": "x"}},
		{"subject a number", map[string]any{"subject": 42}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := writeBody(tc.over)
			var v any
			if err := json.Unmarshal([]byte(body), &v); err != nil {
				t.Fatal(err)
			}
			docOK, errs := o.schemas.ValidateSchemaObject(schema, v)
			w, err := adminapi.DecodeSessionWrite(strings.NewReader(body))
			if err == nil {
				_, err = w.Row("s", "gh", func(string) bool { return true }, fixtureNow)
			}
			if codeOK := err == nil; docOK != codeOK {
				t.Errorf("the document accepts it: %v (%s); the code accepts it: %v (%v)",
					docOK, strings.Join(describe(errs), "; "), codeOK, err)
			}
		})
	}
}

// brokenStore fails every call with err.
type brokenStore struct{ err error }

func (b brokenStore) Put(context.Context, store.Row) error { return b.err }
func (b brokenStore) Get(context.Context, string, string) (store.Row, error) {
	return store.Row{}, b.err
}
func (b brokenStore) GetSession(context.Context, string) ([]store.Row, error) { return nil, b.err }
func (b brokenStore) Delete(context.Context, string, string) error            { return b.err }

// authFunc is an Authenticator from a function.
type authFunc func(*http.Request) (adminapi.Caller, error)

func (f authFunc) Authenticate(r *http.Request) (adminapi.Caller, error) { return f(r) }

// certificates accepts one certificate identity: the first URI SAN.
type certificates struct{ accept string }

func (c certificates) Match(cert *x509.Certificate) (string, bool) {
	if len(cert.URIs) > 0 && cert.URIs[0].String() == c.accept {
		return c.accept, true
	}
	return "", false
}

// TestOpenAPIDescribesEveryAnswer drives every route to every status the
// document gives it, and each answer validates against the document (as
// every answer of this package's tests does: see fixture.conforms). The
// document describes no answer that the handler never gives.
func TestOpenAPIDescribesEveryAnswer(t *testing.T) {
	f := newFixture(t)
	noRevoker := newFixture(t, func(o *adminapi.Options) { o.Revoker = nil })
	broken := newFixture(t, func(o *adminapi.Options) { o.Store = brokenStore{errors.New("disk failure")} })
	unreadable := newFixture(t, func(o *adminapi.Options) { o.Store = brokenStore{store.ErrUnreadable} })
	down := newFixture(t)
	down.st.SetUnavailable(true)
	noKeys := newFixture(t, func(o *adminapi.Options) {
		o.Auth = authFunc(func(*http.Request) (adminapi.Caller, error) {
			return adminapi.Caller{}, fmt.Errorf("%w: the issuer's keys cannot be fetched", adminapi.ErrAuthUnavailable)
		})
	})
	const workload = "spiffe://cluster.local/ns/auth/sa/keycloak"
	byCert := newFixture(t, func(o *adminapi.Options) { o.Auth = adminapi.Auth{Certificates: certificates{workload}} })

	// Each fixture has its own issuer key: a request names the token it
	// carries, signed by its fixture.
	tokens := map[string]func(*fixture) string{
		"":         func(*fixture) string { return "" },
		"ok":       func(f *fixture) string { return f.token(t, nil) },
		"no scope": func(f *fixture) string { return f.token(t, map[string]any{"scope": "openid"}) },
		"audience": func(f *fixture) string { return f.token(t, map[string]any{"aud": "api"}) },
		"opaque":   func(*fixture) string { return "opaque" },
	}
	const (
		row     = "/v1/sessions/s-1/providers/gh"
		session = "/v1/sessions/s-1"
	)
	longSession := "/v1/sessions/" + strings.Repeat("s", adminapi.MaxNameBytes+1)
	type request struct {
		method, target, body string
		token                string // a key of tokens
		contentType          string // "-": none, "": application/json when there is a body
		cert                 string // a client certificate's URI SAN
	}
	for _, tc := range []struct {
		name string
		f    *fixture
		req  request
		want int
	}{
		{"PUT creates", f, request{method: "PUT", target: row, token: "ok", body: writeBody(nil)}, 201},
		{"PUT replaces", f, request{method: "PUT", target: row, token: "ok", body: writeBody(map[string]any{"expires_in": nil})}, 200},
		{"PUT without Content-Type", f, request{method: "PUT", target: "/v1/sessions/s-1/providers/google", token: "ok", body: writeBody(nil), contentType: "-"}, 201},
		{"PUT bad input", f, request{method: "PUT", target: row, token: "ok", body: writeBody(map[string]any{"access_token": nil, "expires_at": "soon"})}, 400},
		{"PUT not JSON", f, request{method: "PUT", target: row, token: "ok", body: "{", contentType: "application/json; charset=utf-8"}, 400},
		{"PUT unknown provider", f, request{method: "PUT", target: "/v1/sessions/s-1/providers/nope", token: "ok", body: writeBody(nil)}, 400},
		{"PUT form", f, request{method: "PUT", target: row, token: "ok", body: "subject=a", contentType: "application/x-www-form-urlencoded"}, 415},
		{"PUT no credentials", f, request{method: "PUT", target: row, body: writeBody(nil)}, 401},
		{"PUT invalid token", f, request{method: "PUT", target: row, token: "opaque", body: writeBody(nil)}, 401},
		{"PUT without the scope", f, request{method: "PUT", target: row, token: "no scope", body: writeBody(nil)}, 403},
		{"PUT store failure", broken, request{method: "PUT", target: row, token: "ok", body: writeBody(nil)}, 500},
		{"PUT store down", down, request{method: "PUT", target: row, token: "ok", body: writeBody(nil)}, 503},
		{"PUT keys unavailable", noKeys, request{method: "PUT", target: row, token: "ok", body: writeBody(nil)}, 503},
		{"PUT by certificate", byCert, request{method: "PUT", target: row, body: writeBody(nil), cert: workload}, 201},
		{"PUT by another certificate", byCert, request{method: "PUT", target: row, body: writeBody(nil), cert: "spiffe://cluster.local/ns/x/sa/y"}, 403},

		{"GET row", f, request{method: "GET", target: row, token: "ok"}, 200},
		{"GET row by certificate", byCert, request{method: "GET", target: row, cert: workload}, 200},
		{"GET unknown row", f, request{method: "GET", target: "/v1/sessions/s-1/providers/okta", token: "ok"}, 404},
		{"GET row of a long session", f, request{method: "GET", target: longSession + "/providers/gh", token: "ok"}, 400},
		{"GET row no credentials", f, request{method: "GET", target: row}, 401},
		{"GET row without the scope", f, request{method: "GET", target: row, token: "no scope"}, 403},
		{"GET row unreadable", unreadable, request{method: "GET", target: row, token: "ok"}, 500},
		{"GET row store down", down, request{method: "GET", target: row, token: "ok"}, 503},

		{"GET session", f, request{method: "GET", target: session, token: "ok"}, 200},
		{"GET unknown session", f, request{method: "GET", target: "/v1/sessions/s-none", token: "ok"}, 404},
		{"GET long session", f, request{method: "GET", target: longSession, token: "ok"}, 400},
		{"GET session invalid token", f, request{method: "GET", target: session, token: "audience"}, 401},
		{"GET session without the scope", f, request{method: "GET", target: session, token: "no scope"}, 403},
		{"GET session store failure", broken, request{method: "GET", target: session, token: "ok"}, 500},
		{"GET session store down", down, request{method: "GET", target: session, token: "ok"}, 503},

		{"DELETE row bad revoke", f, request{method: "DELETE", target: row + "?revoke=yes", token: "ok"}, 400},
		{"DELETE row no credentials", f, request{method: "DELETE", target: row}, 401},
		{"DELETE row without the scope", f, request{method: "DELETE", target: row, token: "no scope"}, 403},
		{"DELETE row store failure", broken, request{method: "DELETE", target: row, token: "ok"}, 500},
		{"DELETE row revoke unsupported", noRevoker, request{method: "DELETE", target: row + "?revoke=true", token: "ok"}, 501},
		{"DELETE row store down", down, request{method: "DELETE", target: row, token: "ok"}, 503},
		{"DELETE row revoking", f, request{method: "DELETE", target: row + "?revoke=true", token: "ok"}, 200},
		{"DELETE row by certificate", byCert, request{method: "DELETE", target: row + "?revoke=false", cert: workload}, 200},

		{"DELETE session long", f, request{method: "DELETE", target: longSession, token: "ok"}, 400},
		{"DELETE session no credentials", f, request{method: "DELETE", target: session}, 401},
		{"DELETE session without the scope", f, request{method: "DELETE", target: session, token: "no scope"}, 403},
		{"DELETE session store failure", broken, request{method: "DELETE", target: session, token: "ok"}, 500},
		{"DELETE session revoke unsupported", noRevoker, request{method: "DELETE", target: session + "?revoke=true", token: "ok"}, 501},
		{"DELETE session keys unavailable", noKeys, request{method: "DELETE", target: session, token: "ok"}, 503},
		{"DELETE session revoking", f, request{method: "DELETE", target: session + "?revoke=true", token: "ok"}, 200},
		{"DELETE session again", f, request{method: "DELETE", target: session, token: "ok"}, 200},

		{"GET openapi.json", f, request{method: "GET", target: "/v1/openapi.json"}, 200},
	} {
		req := httptest.NewRequest(tc.req.method, tc.req.target, strings.NewReader(tc.req.body))
		if tok := tokens[tc.req.token](tc.f); tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		switch {
		case tc.req.contentType == "-":
		case tc.req.contentType != "":
			req.Header.Set("Content-Type", tc.req.contentType)
		case tc.req.body != "":
			req.Header.Set("Content-Type", "application/json")
		}
		if tc.req.cert != "" {
			u, err := url.Parse(tc.req.cert)
			if err != nil {
				t.Fatal(err)
			}
			cert := &x509.Certificate{URIs: []*url.URL{u}}
			req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}}
		}
		if a := tc.f.send(t, req, tc.req.body); a.status != tc.want {
			t.Errorf("%s: status %d, want %d: %s", tc.name, a.status, tc.want, a.body)
		}
	}

	seen := map[routeStatus]bool{}
	for _, fx := range []*fixture{f, noRevoker, broken, unreadable, down, noKeys, byCert} {
		for k := range fx.seen {
			seen[k] = true
		}
	}
	o := theDocument(t)
	for path, item := range o.model.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			for code := range op.Responses.Codes.KeysFromOldest() {
				status, err := strconv.Atoi(code)
				if err != nil {
					t.Errorf("%s %s: response %q is not a status", method, path, code)
					continue
				}
				if k := (routeStatus{strings.ToUpper(method), path, status}); !seen[k] {
					t.Errorf("%s is documented but no test produces it", k)
				}
			}
		}
	}
}
