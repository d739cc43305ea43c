package testop

import (
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// The pages of the sign-in, relative to the issuer.
const (
	loginPath   = "/login"
	consentPath = "/consent"
)

var pages = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in</title></head>
<body>
<h1>Sign in</h1>
<p>to continue to {{.ClientID}}</p>
{{if .Error}}<p role="alert">{{.Error}}</p>{{end}}
<form method="post" action="` + loginPath + `">
<input type="hidden" name="id" value="{{.ID}}">
<label for="username">Username</label> <input id="username" name="username" autocomplete="username" autofocus>
<label for="password">Password</label> <input id="password" name="password" type="password" autocomplete="current-password">
<button id="signin" type="submit">Sign in</button>
</form>
</body></html>
`))

var _ = template.Must(pages.New("consent").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Allow access?</title></head>
<body>
<h1>Allow access?</h1>
<p>{{.ClientID}} asks for access to the account {{.Username}}.</p>
<p>Scopes: {{.Scopes}}</p>
<form method="post" action="` + consentPath + `">
<input type="hidden" name="id" value="{{.ID}}">
<button id="allow" type="submit" name="decision" value="allow">Allow</button>
<button id="deny" type="submit" name="decision" value="deny">Deny</button>
</form>
</body></html>
`))

// pageData is what the pages show.
type pageData struct {
	ID       string
	ClientID string
	Username string
	Scopes   string
	Error    string
}

func render(w http.ResponseWriter, status int, name string, data pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = pages.ExecuteTemplate(w, name, data)
}

// loginPage shows the login form for the auth request named by the query
// parameter id.
func (o *OP) loginPage(w http.ResponseWriter, r *http.Request) {
	req, err := o.store.authRequest(r.URL.Query().Get("id"))
	if err != nil {
		http.Error(w, "unknown or finished authorization request", http.StatusBadRequest)
		return
	}
	render(w, http.StatusOK, "login", pageData{ID: req.id, ClientID: req.clientID})
}

// login checks the form's username and password; on success it sends the
// browser to the consent page, else it shows the form again.
func (o *OP) login(w http.ResponseWriter, r *http.Request) {
	id := r.PostFormValue("id")
	req, err := o.store.authRequest(id)
	if err != nil {
		http.Error(w, "unknown or finished authorization request", http.StatusBadRequest)
		return
	}
	u := o.store.checkPassword(r.PostFormValue("username"), r.PostFormValue("password"))
	if u == nil {
		render(w, http.StatusUnauthorized, "login", pageData{ID: id, ClientID: req.clientID, Error: "Wrong username or password."})
		return
	}
	if err := o.store.signIn(id, u.Subject); err != nil {
		http.Error(w, "unknown or finished authorization request", http.StatusBadRequest)
		return
	}
	http.Redirect(w, r, consentPath+"?id="+url.QueryEscape(id), http.StatusSeeOther)
}

// consentPage asks the signed-in user to allow or deny the client's
// request.
func (o *OP) consentPage(w http.ResponseWriter, r *http.Request) {
	req, err := o.store.authRequest(r.URL.Query().Get("id"))
	if err != nil {
		http.Error(w, "unknown or finished authorization request", http.StatusBadRequest)
		return
	}
	o.store.mu.Lock()
	subject := req.subject
	o.store.mu.Unlock()
	u := o.store.userBySubject(subject)
	if u == nil {
		http.Error(w, "not signed in", http.StatusForbidden)
		return
	}
	render(w, http.StatusOK, "consent", pageData{
		ID: req.id, ClientID: req.clientID, Username: u.Username, Scopes: strings.Join(req.scopes, " "),
	})
}

// consent ends the sign-in: Allow hands the browser to the library's
// callback, which redirects to the client with a code; Deny redirects to
// the client with error=access_denied.
func (o *OP) consent(w http.ResponseWriter, r *http.Request) {
	id := r.PostFormValue("id")
	req, err := o.store.authRequest(id)
	if err != nil {
		http.Error(w, "unknown or finished authorization request", http.StatusBadRequest)
		return
	}
	if r.PostFormValue("decision") != "allow" {
		_ = o.store.DeleteAuthRequest(r.Context(), id)
		op.AuthRequestError(w, r, req, oidc.ErrAccessDenied().WithDescription("the user denied the request"), o.provider)
		return
	}
	if err := o.store.approve(id); err != nil {
		http.Error(w, "not signed in", http.StatusForbidden)
		return
	}
	callback := o.provider.AuthorizationEndpoint().Absolute(o.Issuer) + "/callback?id=" + url.QueryEscape(id)
	http.Redirect(w, r, callback, http.StatusSeeOther)
}
