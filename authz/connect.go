package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/extauthz/extauthz/jwtauth"
	"github.com/extauthz/extauthz/upstreamtoken"
)

// checkDenyStyle reports why s is not a deny style.
func checkDenyStyle(s string) error {
	if s == "" || s == DenyStyleMCP {
		return nil
	}
	return fmt.Errorf("%q is not a deny style (use %q, or leave it unset for the plain deny)", s, DenyStyleMCP)
}

// connectLink returns the connect link for a Check denied with err (the
// session-level error of Lookup, else the worst of failures), and the
// provider it is for; the zero link when there is none. A link is made, when
// a Connector is configured, only for a grant a connect can fix: the session
// has no row at all (unknown to the store: the first of providers), or, of
// providers in order, the first whose row is missing, has expired without a
// refresh token, or was refused by the provider for good. Never for a
// binding mismatch (anywhere among the failures), an expired session (the
// user must sign in again at the authorization server) or a passing
// failure. A link that cannot be made is logged and left out.
func (d *Decider) connectLink(ctx context.Context, claims jwtauth.Claims, providers []string, failures map[string]error, err error) (ConnectLink, string) {
	if d.cfg.Connect == nil || len(providers) == 0 || !fixable(err) {
		return ConnectLink{}, ""
	}
	provider := ""
	if len(failures) == 0 {
		provider = providers[0] // the session has no row at all
	}
	for _, p := range providers {
		if f := failures[p]; errors.Is(f, upstreamtoken.ErrInvalidBinding) {
			return ConnectLink{}, ""
		} else if provider == "" && f != nil && fixable(f) {
			provider = p
		}
	}
	if provider == "" {
		return ConnectLink{}, ""
	}
	link, lerr := d.cfg.Connect.ConnectLink(ctx, ConnectTarget{SessionID: claims.SessionID, Subject: claims.Subject,
		ClientID: claims.ClientID, Provider: provider})
	switch {
	case lerr != nil:
		d.log.WarnContext(ctx, "connect link not made", "session", upstreamtoken.SessionHash(claims.SessionID), "provider", provider, "error", lerr)
		return ConnectLink{}, ""
	case !headerSafe(link.URI) || link.URI == "":
		d.log.ErrorContext(ctx, "connect link not made: unusable URI", "session", upstreamtoken.SessionHash(claims.SessionID), "provider", provider)
		return ConnectLink{}, ""
	}
	return link, provider
}

// fixable reports whether a connect can fix the failure err: a missing row
// (not an expired session), no refresh token, a refresh refused for good.
func fixable(err error) bool {
	switch {
	case errors.Is(err, upstreamtoken.ErrInvalidBinding), errors.Is(err, upstreamtoken.ErrSessionExpired),
		errors.Is(err, upstreamtoken.ErrUpstreamUnavailable):
		return false
	}
	return errors.Is(err, upstreamtoken.ErrSessionNotFound) || errors.Is(err, upstreamtoken.ErrNoRefreshToken) ||
		errors.Is(err, upstreamtoken.ErrRefreshFailed)
}

// withConnect adds connectURI, when not empty, to a 401 deny built with code
// and desc: as the body's connect_uri and as a Link header with relation
// "connect" (RFC 8288).
func withConnect(resp Response, code, desc, connectURI string) Response {
	if connectURI == "" {
		return resp
	}
	resp.Body = denyBody(code, desc, connectURI)
	resp.Headers = append(resp.Headers, linkHeader(connectURI))
	return resp
}

// linkHeader is the Link header of a connect link. The URI is header-safe
// (checked by connectLink) and, being a URI, holds no ">".
func linkHeader(uri string) Header {
	return Header{Name: "link", Value: "<" + uri + `>; rel="connect"`}
}

// MCP's URL elicitation required error (MCP specification 2025-11-25,
// client/elicitation, "URL Elicitation Required Error", from SEP-1036):
// "When a request cannot be processed until an elicitation is completed,
// the server MAY return a URLElicitationRequiredError (code -32042) ... The
// error MUST include a list of elicitations that are required to complete
// before the original can be retried. Any elicitations returned in the error
// MUST be URL mode elicitations and have an elicitationId property." Each
// is {"mode": "url", "elicitationId", "url", "message"}, in the error's
// data.elicitations. Over the Streamable HTTP transport (basic/transports,
// "Sending Messages to the Server") a JSON-RPC request is answered with one
// JSON object, Content-Type application/json; a JSON-RPC error is an
// ordinary response, so its HTTP status is 200: an MCP client reads a 401 as
// a failure of its own authorization and would run its own OAuth flow again,
// which cannot link an upstream account.
const (
	mcpURLElicitationRequired = -32042
	mcpMessage                = "This request requires authorization at an upstream provider."
)

// The JSON-RPC error response of denyMCP.
type (
	mcpResponse struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   mcpError        `json:"error"`
	}
	mcpError struct {
		Code    int          `json:"code"`
		Message string       `json:"message"`
		Data    mcpErrorData `json:"data"`
	}
	mcpErrorData struct {
		Elicitations []mcpElicitation `json:"elicitations"`
	}
	mcpElicitation struct {
		Mode          string `json:"mode"`
		ElicitationID string `json:"elicitationId"`
		URL           string `json:"url"`
		Message       string `json:"message"`
	}
)

// denyMCP is the DenyStyleMCP deny: a JSON-RPC 2.0 error response to the
// request id, HTTP 200, carrying the connect link as a URL-mode
// elicitation (and in a Link header). It keeps reason, so decisions are
// counted and logged as the plain deny would be.
func denyMCP(reason string, id json.RawMessage, link ConnectLink, provider string) Response {
	body, _ := json.Marshal(mcpResponse{JSONRPC: "2.0", ID: id, Error: mcpError{
		Code: mcpURLElicitationRequired, Message: mcpMessage,
		Data: mcpErrorData{Elicitations: []mcpElicitation{{Mode: "url", ElicitationID: link.ID, URL: link.URI,
			Message: "Connect your account at " + provider + " to continue."}}},
	}})
	return Response{Status: http.StatusOK, Reason: reason, Body: string(body),
		Headers: []Header{{Name: "content-type", Value: "application/json"}, linkHeader(link.URI)}}
}

// maxIDLength bounds the JSON-RPC id echoed in a deny.
const maxIDLength = 256

// RequestID returns the id of body when body is one JSON-RPC 2.0 request
// (an object with "jsonrpc": "2.0", a string "method" and an "id" that is a
// string or a number, as MCP requires: not null), as its JSON text, compact.
// A notification (no id), a response (no method), a batch (an array), an id
// longer than 256 bytes, a body that is not one JSON value, or an empty body
// give false: such a request gets the plain deny.
func RequestID(body string) (json.RawMessage, bool) {
	b := bytes.TrimSpace([]byte(body))
	if len(b) == 0 || b[0] != '{' {
		return nil, false
	}
	var msg struct {
		JSONRPC *string         `json:"jsonrpc"`
		Method  *string         `json:"method"`
		ID      json.RawMessage `json:"id"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&msg); err != nil || dec.More() {
		return nil, false
	}
	if _, err := dec.Token(); err == nil {
		return nil, false // something after the object
	}
	if msg.JSONRPC == nil || *msg.JSONRPC != "2.0" || msg.Method == nil || len(msg.ID) == 0 {
		return nil, false
	}
	var id bytes.Buffer
	if err := json.Compact(&id, msg.ID); err != nil || id.Len() > maxIDLength {
		return nil, false
	}
	switch c := id.Bytes()[0]; {
	case c == '"', c == '-', '0' <= c && c <= '9':
		return id.Bytes(), true
	}
	return nil, false
}
