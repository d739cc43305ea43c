package connect

import (
	"html/template"
	"net/http"
)

// pageTemplate is the one page a person sees from the flow: plain HTML, no
// script, no style, no image.
var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer"><title>{{.Title}}</title></head>
<body>
<h1>{{.Title}}</h1>
<p id="message">{{.Message}}</p>
{{if .Hint}}<p id="hint">{{.Hint}}</p>{{end}}
{{if .Back}}<p><a id="back" href="{{.Back}}">Go back</a></p>{{end}}
</body></html>
`))

// page is what pageTemplate shows.
type page struct {
	Title   string
	Message string
	Hint    string
	Back    string
}

// failure is the end of a flow that did not link an account: its status
// and what the page says. Reason is the short name logs use.
type failure struct {
	Status  int
	Reason  string
	Title   string
	Message string
}

// freshStart is every failure page's hint.
const freshStart = "To try again, go back to the application and repeat what you were doing: " +
	"it will give you a new link to follow. Links work once and for a few minutes only."

// The failures, one per reason a flow ends without linking.
var (
	failNoTicket = failure{http.StatusBadRequest, "no_ticket", "Link incomplete",
		"This link carries no connect ticket."}
	failTicketInvalid = failure{http.StatusBadRequest, "ticket_invalid", "Link not valid",
		"This link is damaged or was not made by this service."}
	failTicketExpired = failure{http.StatusGone, "ticket_expired", "Link expired",
		"This link has expired."}
	failTicketUsed = failure{http.StatusGone, "ticket_used", "Link already used",
		"This link has been used already; a link works only once."}
	failUnknownProvider = failure{http.StatusNotFound, "provider_unknown", "Account type not available",
		"This service cannot link accounts of the kind this link asks for."}
	failNoFlow = failure{http.StatusBadRequest, "no_flow", "Sign-in not recognized",
		"This browser did not start this sign-in, or took too long to finish it (its cookie is missing or has expired)."}
	failStateMismatch = failure{http.StatusBadRequest, "state_mismatch", "Sign-in not recognized",
		"The answer from the sign-in server does not belong to the sign-in this browser started."}
	failLoginDenied = failure{http.StatusForbidden, "login_denied", "Sign-in cancelled",
		"The sign-in was cancelled or refused, so no account was linked."}
	failLoginError = failure{http.StatusBadGateway, "login_error", "Sign-in failed",
		"The sign-in server answered with an error, so no account was linked."}
	failLoginExchange = failure{http.StatusBadGateway, "login_exchange", "Sign-in failed",
		"The sign-in could not be completed with the sign-in server, so no account was linked."}
	failLoginIDToken = failure{http.StatusBadGateway, "login_id_token", "Sign-in failed",
		"The sign-in server's answer could not be verified, so no account was linked."}
	failWrongUser = failure{http.StatusForbidden, "wrong_user", "Wrong account",
		"The account you signed in with is not the one this link was made for. Nothing was linked. " +
			"Follow a link only from your own application, signed in as yourself."}
	failProviderDenied = failure{http.StatusForbidden, "provider_denied", "Access not granted",
		"Access at the account's provider was declined, so no account was linked."}
	failProviderError = failure{http.StatusBadGateway, "provider_error", "Linking failed",
		"The account's provider answered with an error, so no account was linked."}
	failProviderExchange = failure{http.StatusBadGateway, "provider_exchange", "Linking failed",
		"The account's provider did not hand out access, so no account was linked."}
	failProviderIDToken = failure{http.StatusBadGateway, "provider_id_token", "Linking failed",
		"The account's provider answered with an identity that could not be verified, so no account was linked."}
	failBinding = failure{http.StatusConflict, "binding_mismatch", "Session belongs to another account",
		"The session this link was made for is bound to another account or application. Nothing was linked."}
	failUnavailable = failure{http.StatusServiceUnavailable, "unavailable", "Service unavailable",
		"A server needed to link the account could not be reached. Nothing was linked."}
	failInternal = failure{http.StatusInternalServerError, "internal", "Something went wrong",
		"The account could not be linked because of a fault on our side. Nothing was linked."}
)

// securityHeaders go on every answer of the handler, pages and redirects
// alike: nothing is cached, framed, sniffed or sent on as a referrer (the
// callbacks' URLs carry codes), and a page may load nothing at all.
func securityHeaders(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Security-Policy", "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// render writes a page with status.
func render(w http.ResponseWriter, status int, p page) {
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = pageTemplate.Execute(w, p)
}
