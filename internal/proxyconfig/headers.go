package proxyconfig

import (
	"fmt"
	"net/textproto"
	"regexp"
	"strings"
)

// plainHeader is a lower-case header name that a Caddyfile holds as a bare
// token and YAML as a plain scalar.
var plainHeader = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// headerList returns the header names of headers in their order, each
// once. Every name must match valid, the names a proxy's configuration can
// hold (described by allowed in the error), and authorization must be among
// them: the answer always replaces or removes the caller's own.
func headerList(headers []string, valid *regexp.Regexp, where, allowed string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, h := range headers {
		if !valid.MatchString(h) {
			return nil, fmt.Errorf("header %q cannot be written into %s: use only %s", h, where, allowed)
		}
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	if !seen["authorization"] {
		return nil, fmt.Errorf("no authorization among the header names")
	}
	return out, nil
}

// canonicalHeaders is headerList of the plain names (plainHeader) for
// where, each in canonical form ("X-Google-Token"), as Caddy and Traefik
// write them.
func canonicalHeaders(headers []string, where string) ([]string, error) {
	lower, err := headerList(headers, plainHeader, where, "lower-case letters, digits, '-' and '_'")
	if err != nil {
		return nil, err
	}
	// Distinct lower-case names have distinct canonical forms.
	names := make([]string, len(lower))
	for i, h := range lower {
		names[i] = textproto.CanonicalMIMEHeaderKey(h)
		if strings.HasPrefix(names[i], "X-Extauthz-") {
			return nil, fmt.Errorf("header %q: the X-Extauthz- prefix is extauthz's own", h)
		}
	}
	return names, nil
}
