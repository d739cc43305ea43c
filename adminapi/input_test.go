package adminapi_test

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/extauthz/extauthz/adminapi"
	"github.com/extauthz/extauthz/store"
)

// inputFields are the names an *InputError may give a field: the body's
// members, the path's parameters, and the body as a whole.
var inputFields = map[string]bool{
	"subject": true, "client_id": true, "access_token": true, "refresh_token": true, "id_token": true,
	"token_type": true, "expires_at": true, "expires_in": true, "session_expires_at": true,
	"upstream_subject": true, "session": true, "provider": true, "body": true,
}

// decodeMessages are the messages DecodeSessionWrite may give: fixed text,
// never a part of the body.
var decodeMessages = regexp.MustCompile(`^(could not be read|larger than [0-9]+ bytes|given more than once|` +
	`must be a [a-z0-9 ]+|must be a JSON object|has an unknown member|is not a known member|is not valid JSON|` +
	`holds more than one JSON value)$`)

// inputError returns err's fields, failing unless err is an *InputError
// wrapping ErrInvalidInput and store.ErrInvalid whose fields are known
// names, or the name of an unknown member given short and printable.
func inputError(t *testing.T, err error) []adminapi.FieldError {
	t.Helper()
	var in *adminapi.InputError
	if !errors.As(err, &in) || !errors.Is(err, adminapi.ErrInvalidInput) || !errors.Is(err, store.ErrInvalid) || len(in.Fields) == 0 {
		t.Fatalf("error %T is not an *InputError with fields", err)
	}
	for _, f := range in.Fields {
		unknown := f.Message == "is not a known member" && len(f.Field) <= 64 && utf8.ValidString(f.Field) &&
			!strings.ContainsFunc(f.Field, func(r rune) bool { return r < 0x20 || (r >= 0x7f && r < 0xa0) })
		if !inputFields[f.Field] && !unknown {
			t.Fatalf("field %q (%s) is neither a known name nor an unknown member's", f.Field, f.Message)
		}
	}
	return in.Fields
}

// shifted maps every visible ASCII byte of s to another one, keeping its
// length and every other byte: the result is header-safe exactly when s is.
func shifted(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 0x21 && c <= 0x7e {
			b[i] = 0x21 + (c-0x21+47)%94
		}
	}
	return string(b)
}

// FuzzDecodeSessionWrite: DecodeSessionWrite and Row never panic; every
// error is an *InputError naming known fields (or an unknown member); the
// decoder's messages are fixed text; Row's verdict and messages do not
// depend on the tokens' bytes (so never hold them); a body both accept is
// stored as given.
func FuzzDecodeSessionWrite(f *testing.F) {
	for _, seed := range []string{
		writeBody(nil),
		`{"subject":"alice","client_id":"app","access_token":"gho_abc"}`,
		`{"subject":"alice","client_id":"app","access_token":"gho_abc","access_token":"gho_def"}`,
		`{"subject":"alice","client_id":"app","acc\u0065ss_token":"gho_abc","access_token":"x"}`,
		`{"subject":"alice","client_id":"app","ACCESS_TOKEN":"gho_abc"}`,
		`{"ſubject":"alice","client_id":"app","access_token":"gho_abc"}`,
		`{"subject":"alice","client_id":"app","access_token":"gho\r\nx-injected: 1"}`,
		`{"subject":"alice","client_id":"app","access_token":"gho\u0000abc","refresh_token":"\ud800"}`,
		`{"subject":"al\u0085ice","client_id":"app","access_token":"tökén"}`,
		`{"subject":"alice","client_id":"app","access_token":"a","expires_in":1e3}`,
		`{"subject":"alice","client_id":"app","access_token":"a","expires_in":-0}`,
		`{"subject":"alice","client_id":"app","access_token":"a","expires_in":99999999999999999999999}`,
		`{"subject":"alice","client_id":"app","access_token":"a","expires_in":"3600"}`,
		`{"subject":"alice","client_id":"app","access_token":"a","expires_in":null,"expires_at":null}`,
		`{"subject":"alice","client_id":"app","access_token":"a","expires_at":"2026-12-05T10:00:00.999999999+14:00"}`,
		`{"subject":"alice","client_id":"app","access_token":"a","expires_at":"0000-01-01T00:00:00Z"}`,
		`{"subject":"alice","client_id":"app","access_token":"a","session_expires_at":"2026-02-30T10:00:00Z"}`,
		`{"subject":"alice","client_id":"app","access_token":{"nested":["gho_abc"]}}`,
		`{"subject":["alice"],"client_id":true,"access_token":12}`,
		`{"subject":"alice","client_id":"app","access_token":"a"} {"access_token":"b"}`,
		`{"subject":"alice","client_id":"app","access_token":"a"}]`,
		"\xef\xbb\xbf{\"subject\":\"alice\",\"client_id\":\"app\",\"access_token\":\"a\"}",
		`{"subject":"alice","client_id":"app","access_token":"gho_abc"`,
		`[{"access_token":"gho_abc"}]`,
		`"gho_abc"`,
		`null`,
		``,
		`{}`,
		`{"` + strings.Repeat("k", 70) + `":"gho_abc"}`,
		`{"x` + "\x01" + `":"gho_abc"}`,
		"{\"subject\":\"alice\",\"client_id\":\"app\",\"access_token\":\"\xff\xfe\"}",
		strings.Repeat(`{"a":`, 200) + strings.Repeat(`}`, 200),
	} {
		f.Add([]byte(seed))
	}
	known := func(p string) bool { return p == "gh" }
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := adminapi.DecodeSessionWrite(bytes.NewReader(data))
		if err != nil {
			for _, fe := range inputError(t, err) {
				if !decodeMessages.MatchString(fe.Message) {
					t.Fatalf("DecodeSessionWrite's message %q is not one of its fixed ones", fe.Message)
				}
			}
			return
		}
		row, err := w.Row("s", "gh", known, fixtureNow)
		other := w
		other.AccessToken, other.RefreshToken, other.IDToken = shifted(w.AccessToken), shifted(w.RefreshToken), shifted(w.IDToken)
		_, otherErr := other.Row("s", "gh", known, fixtureNow)
		if (err == nil) != (otherErr == nil) || (err != nil && err.Error() != otherErr.Error()) {
			t.Fatalf("Row's answer depends on the tokens' bytes: %v / %v", err == nil, otherErr == nil)
		}
		if err != nil {
			inputError(t, err)
			return
		}
		if row.AccessToken != w.AccessToken || row.RefreshToken != w.RefreshToken || row.IDToken != w.IDToken ||
			row.Subject != w.Subject || row.ClientID != w.ClientID || row.SessionID != "s" || row.Provider != "gh" ||
			row.TokenType == "" {
			t.Fatal("the row differs from the body")
		}
	})
}
