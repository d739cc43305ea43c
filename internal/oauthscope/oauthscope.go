// Package oauthscope reads OAuth 2.0 scopes (RFC 6749 section 3.3).
package oauthscope

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/extauthz/extauthz/internal/setting"
)

// Valid reports whether s is an RFC 6749 §3.3 scope-token: one or more
// of %x21 / %x23-5B / %x5D-7E (printable ASCII except space, '"' and '\').
func Valid(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// Parse splits a space-separated scope list (RFC 6749 §3.3), ignoring
// repeated, leading and trailing spaces and repeated scopes. Any other
// character outside the scope-token set, a tab included, is an error.
func Parse(v string) ([]string, error) {
	var out []string
	for _, s := range strings.Split(v, " ") {
		if s == "" || slices.Contains(out, s) {
			continue
		}
		if !Valid(s) {
			return nil, fmt.Errorf("%q is not an RFC 6749 scope-token", s)
		}
		out = append(out, s)
	}
	return out, nil
}

// Check returns a problem of the setting key for each of scopes that is not
// a scope-token, joined; nil when all are.
func Check(key string, scopes []string) error {
	var errs []error
	for _, s := range scopes {
		if !Valid(s) {
			errs = append(errs, setting.Errorf(key, `: %q is not a scope-token (RFC 6749: printable ASCII without space, '"' or '\'; list scopes as separate items)`, s))
		}
	}
	return errors.Join(errs...)
}
