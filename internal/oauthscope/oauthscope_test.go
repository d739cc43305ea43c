package oauthscope

import (
	"slices"
	"testing"
)

func TestParse(t *testing.T) {
	got, err := Parse(" repo  read:org repo https://graph.microsoft.com/.default ")
	if err != nil || !slices.Equal(got, []string{"repo", "read:org", "https://graph.microsoft.com/.default"}) {
		t.Errorf("ParseScopes = %q, %v", got, err)
	}
	if got, err := Parse("   "); err != nil || got != nil {
		t.Errorf("blank: %q, %v", got, err)
	}
	for _, bad := range []string{"a\tb", "a\nb", `a"b`, `a\b`, "é", "a\x00"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}
