package cached

import (
	"strings"
	"testing"
	"unsafe"

	"github.com/extauthz/extauthz/store"
)

// TestPackKeepsContentInOneString checks that pack leaves every row as it
// was and makes the rows' own strings slices of one string, laid out one
// after the other, while the shared ones are left alone.
func TestPackKeepsContentInOneString(t *testing.T) {
	rows := []store.Row{
		{SessionID: "s-1", Provider: "github", Tokens: store.Tokens{AccessToken: strings.Clone("at-1"), RefreshToken: strings.Clone("rt-1"), TokenType: "Bearer"},
			Subject: strings.Clone("user-1"), ClientID: "app", UpstreamSubject: strings.Clone("gh-1")},
		{SessionID: "s-1", Provider: "google", Tokens: store.Tokens{AccessToken: strings.Clone("at-2"), IDToken: strings.Clone("id-2"), TokenType: "Bearer"},
			Subject: strings.Clone("user-1"), ClientID: "app"},
		{SessionID: "s-1", Provider: "empty"},
	}
	want := append([]store.Row{}, rows...)
	provider := unsafe.StringData(rows[0].Provider)
	pack(rows)
	for i := range rows {
		if rows[i] != want[i] {
			t.Errorf("row %d changed by pack", i)
		}
	}
	if unsafe.StringData(rows[0].Provider) != provider {
		t.Error("pack replaced a shared string")
	}
	var next uintptr // where the previous own string ended
	for i := range rows {
		for j, p := range ownStrings(&rows[i]) {
			if *p == "" {
				continue
			}
			at := uintptr(unsafe.Pointer(unsafe.StringData(*p)))
			if next != 0 && at != next {
				t.Errorf("row %d, string %d: not laid out right after the previous one", i, j)
			}
			next = at + uintptr(len(*p))
		}
	}
}
