package jwtauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4/jwt"
)

// topLevelMembers is the plain encoding/json token walk of a top-level
// object, the reference decodeClaims must agree with: it returns every
// member's JSON text, errDuplicateClaim for a repeated name, errClaimsJSON
// otherwise.
func topLevelMembers(payload []byte) (map[string]string, error) {
	if !utf8.Valid(payload) {
		return nil, errClaimsJSON
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errClaimsJSON
	}
	members := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errClaimsJSON
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errClaimsJSON
		}
		if _, dup := members[name]; dup {
			return nil, errDuplicateClaim
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, errClaimsJSON
		}
		members[name] = string(val)
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errClaimsJSON
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errClaimsJSON
	}
	return members, nil
}

var claimsSeeds = []string{
	`{}`,
	` { } `,
	`{"sub":"a","exp":1,"aud":["x","y"],"tsid":"s"}`,
	`{"sub":"a","sub":"b"}`,
	`{"sub":"a","s\u0075b":"b"}`,
	`{"x":"}\"]{","sub":"\"quoted\" \\ back","aud":[ "a" , "b\"]" ],"scp":[]}`,
	`{"obj":{"a":[1,{"b":"]}"}],"a":2},"exp":1.5e9,"nbf":-0,"iat":0}`,
	"{\n\t\"sub\" :\r\n \"a\" ,\"tsid\":null,\"azp\":true,\"client_id\":false}",
	`{"sub":"a"} x`,
	`{"sub":"a",}`,
	`{"sub"}`,
	`[1]`,
	`"x"`,
	`{"\ud800":1}`,
	"{\"s\xffub\":1}",
}

func TestDecodeClaimsMatchesReference(t *testing.T) {
	for _, s := range claimsSeeds {
		checkDecodeClaims(t, []byte(s))
	}
}

// FuzzDecodeClaims checks decodeClaims, the library's strict JSON decoding
// of a payload, against encoding/json: it refuses what is not one object of
// valid UTF-8 and every top-level name given twice, and what it accepts
// reads as encoding/json reads it.
func FuzzDecodeClaims(f *testing.F) {
	for _, s := range claimsSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) { checkDecodeClaims(t, payload) })
}

func checkDecodeClaims(t *testing.T, payload []byte) {
	t.Helper()
	c, err := decodeClaims(payload)
	if err != nil && (!errors.Is(err, ErrInvalidToken) || c != nil) {
		t.Fatalf("%q: decodeClaims = %v, %v", payload, c, err)
	}
	ref, refErr := topLevelMembers(payload)
	if !json.Valid(payload) || !utf8.Valid(payload) {
		if err != errClaimsJSON {
			t.Fatalf("%q: decodeClaims error %v, want %v", payload, err, errClaimsJSON)
		}
		return
	}
	if refErr != nil && err == nil {
		t.Fatalf("%q: decodeClaims accepted what the reference refuses: %v", payload, refErr)
	}
	if err != nil {
		return
	}
	// The untyped claims read as encoding/json reads them (absent and null
	// alike as nil).
	untyped := map[string]any{
		"sub": c.Subject, "jti": c.ID, "client_id": c.ClientID, "azp": c.AZP,
		"tsid": c.SessionID, "scope": c.Scope, "scp": c.Scp,
	}
	for name, got := range untyped {
		var want any
		if raw, ok := ref[name]; ok {
			if err := json.Unmarshal([]byte(raw), &want); err != nil {
				t.Fatalf("%q: claim %q: %v", payload, name, err)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: claim %q = %#v, encoding/json %#v", payload, name, got, want)
		}
	}
	var iss string
	if raw, ok := ref["iss"]; ok {
		_ = json.Unmarshal([]byte(raw), &iss)
	}
	if c.Issuer != iss {
		t.Fatalf("%q: iss = %q, encoding/json %q", payload, c.Issuer, iss)
	}
	for name, d := range map[string]*jwt.NumericDate{"exp": c.Expiry, "nbf": c.NotBefore, "iat": c.IssuedAt} {
		raw, ok := ref[name]
		if !ok || raw == "null" {
			if d != nil {
				t.Fatalf("%q: absent %s read as %d", payload, name, *d)
			}
			continue
		}
		var f float64
		if err := json.Unmarshal([]byte(raw), &f); err != nil || d == nil || int64(*d) != int64(f) || f < 0 || f >= maxNumericDate+1 {
			t.Fatalf("%q: %s = %v read as %v", payload, name, raw, d)
		}
	}
}
