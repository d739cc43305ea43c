package jwtauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
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

// TestDecodeClaims pins what decodeClaims reads, and which error it gives,
// where the decoder could differ from go-jose's, which it replaced: escaped
// and repeated names at each depth, numbers for dates, numbers out of
// range, a byte order mark, data after the object, and which of several
// errors is given.
func TestDecodeClaims(t *testing.T) {
	date := func(n int64) *jwt.NumericDate { d := jwt.NumericDate(n); return &d }
	tests := []struct {
		name    string
		payload string
		wantErr error
		check   func(t *testing.T, c *accessClaims)
	}{
		{name: "escaped name", payload: `{"s\u0075b":"a","\u0074sid":"s"}`, check: func(t *testing.T, c *accessClaims) {
			if c.Subject != "a" || c.SessionID != "s" {
				t.Errorf("sub %#v, tsid %#v", c.Subject, c.SessionID)
			}
		}},
		{name: "escaped value", payload: `{"iss":"a\"b\u00e9","aud":["\u0078"],"sub":"\ud83d\ude00"}`, check: func(t *testing.T, c *accessClaims) {
			if c.Issuer != "a\"bé" || !slices.Equal(c.Audience, []string{"x"}) || c.Subject != "😀" {
				t.Errorf("iss %q, aud %q, sub %#v", c.Issuer, c.Audience, c.Subject)
			}
		}},
		{name: "names match exactly", payload: `{"SUB":"a","Tsid":"s","sub ":"b"}`, check: func(t *testing.T, c *accessClaims) {
			if c.Subject != nil || c.SessionID != nil {
				t.Errorf("sub %#v, tsid %#v", c.Subject, c.SessionID)
			}
		}},
		{name: "repeated name, escaped spelling", payload: `{"\u0073ub":"a","sub":"b"}`, wantErr: errDuplicateClaim},
		{name: "repeated unknown name", payload: `{"x":{"a":1,"a":2},"x":1}`, wantErr: errDuplicateClaim},
		{name: "nested repeat in an unknown member", payload: `{"x":{"a":[{"b":1,"b":2}]},"sub":"a"}`, check: func(t *testing.T, c *accessClaims) {
			if c.Subject != "a" {
				t.Errorf("sub %#v", c.Subject)
			}
		}},
		{name: "nested repeat in sub", payload: `{"sub":{"a":1,"\u0061":2}}`, wantErr: errDuplicateClaim},
		{name: "nested repeat in scp", payload: `{"scp":[{"a":1,"a":2}]}`, wantErr: errDuplicateClaim},
		{name: "nested repeat in aud", payload: `{"aud":[{"a":1,"a":2}]}`, wantErr: errDuplicateClaim},
		{name: "nested repeat in iss", payload: `{"iss":{"a":1,"a":2}}`, wantErr: errClaimsJSON},
		{name: "nested repeat in exp", payload: `{"exp":{"a":1,"a":2}}`, wantErr: errClaimsJSON},
		{name: "nested repeat, then a syntax error", payload: `{"x":{"a":1,"a":2},"y":1,}`, wantErr: errClaimsJSON},
		{name: "repeated name, then truncated", payload: `{"x":1,"x":2`, wantErr: errClaimsJSON},
		{name: "repeated name beats a claim of the wrong type", payload: `{"aud":5,"x":1,"x":2}`, wantErr: errDuplicateClaim},
		{name: "iss wrong before aud wrong", payload: `{"aud":5,"iss":5}`, wantErr: errClaimsJSON},
		{name: "aud wrong before a later claim", payload: `{"sub":{"a":1,"a":2},"aud":5}`, wantErr: errAudience},
		{name: "aud wrong before a date out of range", payload: `{"exp":-1,"aud":5}`, wantErr: errAudience},
		{name: "iss wrong before a nested repeat", payload: `{"sub":{"a":1,"a":2},"iss":5}`, wantErr: errClaimsJSON},
		{name: "aud null", payload: `{"aud":null}`, wantErr: errAudience},
		{name: "aud array of another type", payload: `{"aud":["a",1]}`, wantErr: errAudience},
		{name: "aud array with a huge number", payload: `{"aud":["a",1e400]}`, wantErr: errClaimsJSON},
		{name: "aud empty array", payload: `{"aud":[]}`, check: func(t *testing.T, c *accessClaims) {
			if c.Audience == nil || len(c.Audience) != 0 {
				t.Errorf("aud %#v", c.Audience)
			}
		}},
		{name: "dates as numbers", payload: `{"exp":1e3,"nbf":1.5,"iat":-0}`, check: func(t *testing.T, c *accessClaims) {
			if !reflect.DeepEqual([]*jwt.NumericDate{c.Expiry, c.NotBefore, c.IssuedAt}, []*jwt.NumericDate{date(1000), date(1), date(0)}) {
				t.Errorf("exp %v, nbf %v, iat %v", *c.Expiry, *c.NotBefore, *c.IssuedAt)
			}
		}},
		{name: "date just above -1", payload: `{"exp":-0.5}`, check: func(t *testing.T, c *accessClaims) {
			if c.Expiry == nil || *c.Expiry != 0 {
				t.Errorf("exp %v", c.Expiry)
			}
		}},
		{name: "date null", payload: `{"exp":null,"nbf":null,"iat":null}`, check: func(t *testing.T, c *accessClaims) {
			if c.Expiry != nil || c.NotBefore != nil || c.IssuedAt != nil {
				t.Errorf("exp %v, nbf %v, iat %v", c.Expiry, c.NotBefore, c.IssuedAt)
			}
		}},
		{name: "last second of 9999", payload: `{"exp":253402300799.9}`, check: func(t *testing.T, c *accessClaims) {
			if c.Expiry == nil || *c.Expiry != maxNumericDate {
				t.Errorf("exp %v", c.Expiry)
			}
		}},
		{name: "date after 9999", payload: `{"iat":253402300800}`, wantErr: errClaimsJSON},
		{name: "date before 1970", payload: `{"nbf":-1}`, wantErr: errClaimsJSON},
		{name: "date 2^62", payload: `{"exp":4611686018427387904}`, wantErr: errClaimsJSON},
		{name: "date huge", payload: `{"exp":1e400}`, wantErr: errClaimsJSON},
		{name: "date as a string", payload: `{"exp":"1"}`, wantErr: errClaimsJSON},
		{name: "date as a bool", payload: `{"exp":true}`, wantErr: errClaimsJSON},
		{name: "huge number in sub", payload: `{"sub":1e400}`, wantErr: errClaimsJSON},
		{name: "huge number in jti", payload: `{"jti":[-1e400]}`, wantErr: errClaimsJSON},
		{name: "huge number in an unknown member", payload: `{"x":1e400,"sub":"a"}`, check: func(t *testing.T, c *accessClaims) {
			if c.Subject != "a" {
				t.Errorf("sub %#v", c.Subject)
			}
		}},
		{name: "large numbers untyped", payload: `{"sub":12345678901234567890,"jti":-0,"azp":1e308}`, check: func(t *testing.T, c *accessClaims) {
			if c.Subject != 12345678901234567890.0 || c.ID != 0.0 || c.AZP != 1e308 {
				t.Errorf("sub %#v, jti %#v, azp %#v", c.Subject, c.ID, c.AZP)
			}
		}},
		{name: "untyped values", payload: `{"client_id":true,"azp":false,"scope":{"a":[null]},"scp":[1,"a"]}`, check: func(t *testing.T, c *accessClaims) {
			if c.ClientID != true || c.AZP != false || !reflect.DeepEqual(c.Scope, map[string]any{"a": []any{nil}}) || !reflect.DeepEqual(c.Scp, []any{1.0, "a"}) {
				t.Errorf("client_id %#v, azp %#v, scope %#v, scp %#v", c.ClientID, c.AZP, c.Scope, c.Scp)
			}
		}},
		// go-jose's decoder read these as U+FFFD; two spellings, one reading.
		{name: "escaped lone surrogate in a claim", payload: `{"sub":"\ud800"}`, wantErr: errClaimsJSON},
		{name: "escaped lone surrogate in an unknown member", payload: `{"x":["\udc00"]}`, wantErr: errClaimsJSON},
		{name: "invalid UTF-8 in a name", payload: "{\"s\xffub\":1}", wantErr: errClaimsJSON},
		{name: "byte order mark", payload: "\ufeff{}", wantErr: errClaimsJSON},
		{name: "white space around", payload: " \t\r\n{ } \n"},
		{name: "data after the object", payload: `{} x`, wantErr: errClaimsJSON},
		{name: "a second object", payload: `{}{}`, wantErr: errClaimsJSON},
		{name: "a second value", payload: `{} 1`, wantErr: errClaimsJSON},
		{name: "not an object", payload: `["sub"]`, wantErr: errClaimsJSON},
		{name: "empty", payload: ``, wantErr: errClaimsJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := decodeClaims([]byte(tt.payload))
			if err != tt.wantErr {
				t.Fatalf("decodeClaims error %v, want %v", err, tt.wantErr)
			}
			if err == nil && tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}
