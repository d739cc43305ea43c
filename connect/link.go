package connect

import (
	"context"
	"errors"
	"net/url"
	"strings"

	"github.com/extauthz/extauthz/authz"
)

// PathConnect is the path, under the public URL, at which a browser
// follows a connect link.
const PathConnect = "/connect"

// Links makes the connect links of denies (authz.Connector):
// {public URL}/connect?ticket=... with a new ticket each time.
type Links struct {
	base    string
	tickets *Tickets
}

var _ authz.Connector = (*Links)(nil)

// NewLinks returns the links under publicURL (connect.public_url: an
// absolute https URL, or http on a loopback host for development, without
// query or fragment; a trailing "/" is dropped) carrying tickets from
// tickets.
func NewLinks(publicURL string, tickets *Tickets) (*Links, error) {
	base, _, err := parsePublicURL(publicURL)
	if err != nil {
		return nil, err
	}
	return &Links{base: base, tickets: tickets}, nil
}

// parsePublicURL checks connect.public_url (an absolute http(s) URL without
// query or fragment) and returns it without a trailing "/", and parsed.
func parsePublicURL(publicURL string) (string, *url.URL, error) {
	u, err := url.Parse(publicURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.RawQuery != "" || u.Fragment != "" ||
		strings.ContainsAny(publicURL, "?#<> \t\r\n") {
		return "", nil, errors.New("connect: the public URL must be an absolute http(s) URL without query or fragment")
	}
	base := strings.TrimSuffix(publicURL, "/")
	u, _ = url.Parse(base)
	return base, u, nil
}

// ConnectLink implements authz.Connector: a link with a new ticket for t,
// whose ID is the ticket's ID.
func (l *Links) ConnectLink(_ context.Context, t authz.ConnectTarget) (authz.ConnectLink, error) {
	ticket, tk, err := l.tickets.Issue(t.SessionID, t.Subject, t.ClientID, t.Provider)
	if err != nil {
		return authz.ConnectLink{}, err
	}
	// A ticket is URL-safe: no escaping needed.
	return authz.ConnectLink{URI: l.base + PathConnect + "?ticket=" + ticket, ID: tk.ID}, nil
}
