package store_test

import (
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/store"
)

func TestNotifyTag(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	want := sha256.Sum256(append(append([]byte{}, key...), "sess-ü"...))
	if got := store.NotifyTag(key, "sess-ü"); got != store.Tag(want) {
		t.Errorf("NotifyTag = %x, want sha256(key || id) %x", got, want)
	}
	if store.NotifyTag(key, "a") == store.NotifyTag([]byte("another key"), "a") {
		t.Error("the tag does not depend on the key")
	}
	tag := store.NotifyTag(key, "s1")
	s := tag.String()
	if len(s) != 64 || strings.ToLower(s) != s {
		t.Errorf("String = %q, want 64 lower-case hex digits", s)
	}
	if got, ok := store.ParseTag(s); !ok || got != tag {
		t.Errorf("ParseTag(String) = %x, %v", got, ok)
	}
	for _, bad := range []string{"", "*", strings.ToUpper(s), s[:63], s + "0", `["s1", "gh"]`, strings.Repeat("g", 64)} {
		if _, ok := store.ParseTag(bad); ok {
			t.Errorf("ParseTag(%q) ok", bad)
		}
	}
}

func FuzzParseTag(f *testing.F) {
	f.Add(store.NotifyTag(nil, "s").String())
	f.Add("*")
	f.Add(`["s1", "gh"]`)
	f.Fuzz(func(t *testing.T, s string) {
		tag, ok := store.ParseTag(s)
		if ok != (tag.String() == s) {
			t.Fatalf("ParseTag(%q) = %v, %v; String %q", s, tag, ok, tag.String())
		}
	})
}
