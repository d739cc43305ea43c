// Package setting words the problems of configuration settings so that each
// rule is checked by the package that uses the setting while the
// configuration loader still names every problem by its full key.
//
// A package validating its settings returns one *Error per problem (joined
// with errors.Join), keyed relative to the settings it was given; the loader
// puts the key path of those settings in front with Under.
package setting

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Error is a problem with one setting. Key names the setting relative to the
// settings validated ("token_url", "routes[2].path_prefix"), or is empty for a
// problem of those settings as a whole. With a Key, Text continues the
// sentence the key begins, so it starts with a space or a colon (" is
// required", `: "x y" is not a valid header name`); without one, Text is a
// sentence of its own. Neither ever quotes a secret value.
type Error struct {
	Key  string
	Text string
}

// Error returns the key followed by the text.
func (e *Error) Error() string { return e.Key + e.Text }

// Errorf returns the problem of the setting key, its text formatted as with
// fmt.Sprintf.
func Errorf(key, format string, args ...any) error {
	return &Error{Key: key, Text: fmt.Sprintf(format, args...)}
}

// Under returns the problems err holds (an errors.Join tree is flattened),
// each named under at, the key path of the settings that were validated:
// "providers.gh" and the problem of key "token_url" give
// "providers.gh.token_url ...", and a problem of the settings as a whole
// "providers.gh: ...". An empty at leaves the keys as they are. A nil err
// has no problems.
func Under(at string, err error) []string {
	var out []string
	for _, e := range flatten(Within(at, err)) {
		out = append(out, e.Error())
	}
	return out
}

// Within returns the problems err holds, joined, as *Error values keyed
// under at (see Under): a package validating settings that hold other
// settings uses it to name the inner ones. An error that is not an *Error
// becomes a problem of at as a whole. An empty at or a nil err returns err.
func Within(at string, err error) error {
	if at == "" || err == nil {
		return err
	}
	var errs []error
	for _, err := range flatten(err) {
		e, ok := err.(*Error)
		switch {
		case !ok:
			errs = append(errs, &Error{Key: at, Text: ": " + err.Error()})
		case e.Key == "":
			errs = append(errs, &Error{Key: at, Text: ": " + e.Text})
		default:
			errs = append(errs, &Error{Key: at + "." + e.Key, Text: e.Text})
		}
	}
	return errors.Join(errs...)
}

// Prefixed returns the problems err holds (an errors.Join tree is
// flattened) as one joined error, each message after prefix; nil when err
// is nil. Packages use it to name their settings in their own errors
// ("oauthclient: provider \"gh\": token_url ...").
func Prefixed(prefix string, err error) error {
	var errs []error
	for _, e := range flatten(err) {
		errs = append(errs, fmt.Errorf("%s%w", prefix, e))
	}
	return errors.Join(errs...)
}

// flatten lists the errors of an errors.Join tree, or err alone; none for
// nil.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// IsLoopback reports whether host (without port) is localhost or a
// loopback IP address (127.0.0.0/8, ::1).
func IsLoopback(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CleartextToRemote reports whether raw is a plain http:// URL to a host
// that is not a loopback address: what such a URL carries (client secrets,
// tokens, the keys that verify them) would cross a network in the clear.
// Any other URL, including one that does not parse, gives false: whether it
// is a URL at all is the owning package's rule.
func CleartextToRemote(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Scheme == "http" && u.Host != "" && !IsLoopback(u.Hostname())
}
