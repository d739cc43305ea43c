package proxyconfig

import (
	"fmt"
	"regexp"
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
