package setting

import (
	"errors"
	"slices"
	"testing"
)

func TestUnder(t *testing.T) {
	problems := errors.Join(
		Errorf("token_url", " must be an absolute http(s) URL"),
		errors.Join(Errorf("header", ": %q is not a valid header name", "a b"), Errorf("", "header and id_token_header must differ")),
		errors.New("cannot read file"),
	)
	for _, tc := range []struct {
		at   string
		want []string
	}{
		{"providers.gh", []string{
			"providers.gh.token_url must be an absolute http(s) URL",
			`providers.gh.header: "a b" is not a valid header name`,
			"providers.gh: header and id_token_header must differ",
			"providers.gh: cannot read file",
		}},
		{"", []string{
			"token_url must be an absolute http(s) URL",
			`header: "a b" is not a valid header name`,
			"header and id_token_header must differ",
			"cannot read file",
		}},
	} {
		if got := Under(tc.at, problems); !slices.Equal(got, tc.want) {
			t.Errorf("Under(%q) = %q, want %q", tc.at, got, tc.want)
		}
	}
	if got := Under("x", nil); got != nil {
		t.Errorf("Under(nil) = %q, want none", got)
	}
	if got := Under("routes[2]", Within("providers", Errorf("", "bad"))); !slices.Equal(got, []string{"routes[2].providers: bad"}) {
		t.Errorf("nested Within: %q", got)
	}
}

func TestPrefixed(t *testing.T) {
	err := Prefixed("oauthclient: provider \"gh\": ", errors.Join(Errorf("client_id", " is required"), Errorf("auth_style", " must be set")))
	want := "oauthclient: provider \"gh\": client_id is required\noauthclient: provider \"gh\": auth_style must be set"
	if err == nil || err.Error() != want {
		t.Fatalf("Prefixed = %v, want %q", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.Key != "client_id" {
		t.Errorf("Prefixed lost the *Error: %v", e)
	}
	if Prefixed("p: ", nil) != nil {
		t.Error("Prefixed(nil) is not nil")
	}
}
