package authz

import (
	"strings"
	"testing"
)

// FuzzBearer feeds arbitrary Authorization header values to bearer. It must
// not panic; an accepted value must (after the surrounding whitespace that
// bearer ignores) start with the scheme "Bearer" in any case, followed by
// a space, a tab or nothing; the credentials it returns carry no leading or
// trailing whitespace; and re-rendering them as "Bearer <raw>" reads back
// the same credentials.
func FuzzBearer(f *testing.F) {
	for _, s := range []string{
		"",
		"Bearer",
		"Bearer ",
		"Bearer abc.def.ghi",
		"bearer abc",
		"BEARER\tabc",
		"bEaReR  \t abc  ",
		"  Bearer abc  ",
		"Bearer a b",
		"Bearerabc",
		"Bearer\u00a0abc",
		"Bearer\u3000abc",
		"Basic YWxpY2U6cHc=",
		"Bear",
		"Bearer\r\nx-injected: 1",
		"Bearer abc\x00",
		"\u212aBearer abc",
		"Bearer, Bearer abc",
		"\xff\xfe",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		raw, ok := bearer(h)
		if !ok {
			if raw != "" {
				t.Fatalf("refused %q but returned credentials %q", h, raw)
			}
			return
		}
		if raw != strings.TrimSpace(raw) {
			t.Fatalf("accepted %q with credentials %q that have surrounding whitespace", h, raw)
		}
		trimmed := strings.TrimSpace(h)
		const scheme = "bearer"
		if len(trimmed) < len(scheme) || !strings.EqualFold(trimmed[:len(scheme)], scheme) {
			t.Fatalf("accepted %q, which does not start with the Bearer scheme", h)
		}
		if rest := trimmed[len(scheme):]; rest != "" && rest[0] != ' ' && rest[0] != '\t' {
			t.Fatalf("accepted %q: the scheme is not followed by a space or tab", h)
		}
		if !strings.HasSuffix(trimmed, raw) {
			t.Fatalf("credentials %q are not the end of %q", raw, h)
		}
		if again, ok := bearer("Bearer " + raw); !ok || again != raw {
			t.Fatalf("Bearer %q read back as %q, %v", raw, again, ok)
		}
	})
}
