package upstreamtoken

import (
	"slices"
	"testing"
)

func TestResultCredentials(t *testing.T) {
	cred := func(s string) UpstreamCredential {
		return UpstreamCredential{AccessToken: s + "-at", IDToken: s + "-id"}
	}
	for _, tc := range []struct {
		name string
		set  []string // providers set in turn; each one's credential is cred(provider + its count)
		want []string // providers yielded, in order
	}{
		{"none", nil, nil},
		{"one", []string{"gh"}, []string{"gh"}},
		{"three", []string{"gh", "google", "okta"}, []string{"gh", "google", "okta"}},
		{"first replaced", []string{"gh", "google", "gh"}, []string{"gh", "google"}},
		{"later replaced", []string{"gh", "google", "okta", "google"}, []string{"gh", "google", "okta"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var res Result
			last := map[string]UpstreamCredential{}
			for i, p := range tc.set {
				c := cred(p + string(rune('0'+i)))
				res.SetCredential(p, c)
				last[p] = c
			}
			if res.NumCredentials() != len(tc.want) {
				t.Errorf("NumCredentials = %d, want %d", res.NumCredentials(), len(tc.want))
			}
			var got []string
			for p, c := range res.Credentials() {
				got = append(got, p)
				if c != last[p] {
					t.Errorf("Credentials yielded a stale credential for %s", p)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Credentials yielded %v, want %v", got, tc.want)
			}
			for _, p := range tc.want {
				if c, ok := res.Credential(p); !ok || c != last[p] {
					t.Errorf("Credential(%s): ok %v, latest %v", p, ok, c == last[p])
				}
			}
			if _, ok := res.Credential("absent"); ok {
				t.Error("Credential(absent) reported one")
			}
		})
	}
}

func TestResultFirstCredentialAllocatesNothing(t *testing.T) {
	c := UpstreamCredential{AccessToken: "at"}
	allocs := testing.AllocsPerRun(100, func() {
		var res Result
		res.SetCredential("gh", c)
		if got, ok := res.Credential("gh"); !ok || got != c {
			t.Fatal("credential lost")
		}
	})
	if allocs != 0 {
		t.Errorf("one credential: %v allocations, want none", allocs)
	}
}
