package envoyconf

import (
	"strings"
	"testing"

	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

func TestMatches(t *testing.T) {
	list := &matcherv3.ListStringMatcher{Patterns: []*matcherv3.StringMatcher{
		{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "authorization"}},
		{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "X-Google-"}, IgnoreCase: true},
		{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: "-token"}},
		{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: "scope"}},
	}}
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"authorization", true},
		{"Authorization", false}, // exact is case-sensitive
		{"x-google-id", true},
		{"x-gh-token", true},
		{"x-extauthz-required-scopes", true},
		{"x-extauthz-providers", false},
	} {
		got, err := Matches(list, tc.name)
		if err != nil || got != tc.want {
			t.Errorf("Matches(%q) = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	if got, err := Matches(nil, "authorization"); got || err != nil {
		t.Errorf("a nil list matches: %v, %v", got, err)
	}
	regex := &matcherv3.ListStringMatcher{Patterns: []*matcherv3.StringMatcher{
		{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".*"}}}}}
	if _, err := Matches(regex, "authorization"); err == nil {
		t.Error("a regex matcher is not refused")
	}
}

func TestBootstrap(t *testing.T) {
	for _, tc := range []struct{ name, yaml, err string }{
		{"unknown field", "static_resources: { listenerz: [] }", "listenerz"},
		{"unknown typed_config", `static_resources:
  clusters:
  - name: c
    typed_extension_protocol_options:
      x: { "@type": type.googleapis.com/no.such.Type }`, "no.such.Type"},
		{"invalid", "static_resources: { clusters: [{ name: '' }] }", "Name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Bootstrap([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want one containing %q", err, tc.err)
			}
		})
	}
}
