package authz

import (
	"slices"
	"testing"
)

// TestHeaderNames: every header a provider could write, once, sorted, and
// authorization even when no provider writes it.
func TestHeaderNames(t *testing.T) {
	for _, tc := range []struct {
		name      string
		providers map[string]Provider
		want      []string
	}{
		{"none", nil, []string{"authorization"}},
		{"default header", map[string]Provider{"gh": {}}, []string{"authorization"}},
		{"own headers only", map[string]Provider{"g": {Header: "x-g", IDTokenHeader: "x-g-id"}},
			[]string{"authorization", "x-g", "x-g-id"}},
		{"shared header", map[string]Provider{"a": {Header: "x-t"}, "b": {Header: "x-t", IDTokenHeader: "authorization"}},
			[]string{"authorization", "x-t"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := (Config{Providers: tc.providers}).HeaderNames(); !slices.Equal(got, tc.want) {
				t.Errorf("HeaderNames() = %q, want %q", got, tc.want)
			}
		})
	}
}
