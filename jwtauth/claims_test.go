package jwtauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"testing"
	"unicode/utf8"
)

// splitClaimsReference is the plain json.Decoder token walk of the top-level
// object that splitClaims must agree with: it returns every member's JSON
// text, errDuplicateClaim for a repeated name, errClaimsJSON otherwise.
func splitClaimsReference(payload []byte) (map[string]string, error) {
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

func (rc rawClaims) byName() map[string]string {
	return map[string]string{
		"iss": rc.iss, "aud": rc.aud, "exp": rc.exp, "nbf": rc.nbf, "iat": rc.iat,
		"sub": rc.sub, "client_id": rc.clientID, "azp": rc.azp, "tsid": rc.tsid,
		"scope": rc.scope, "scp": rc.scp,
	}
}

var splitClaimsSeeds = []string{
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

func TestSplitClaimsMatchesReference(t *testing.T) {
	for _, s := range splitClaimsSeeds {
		checkSplitClaims(t, []byte(s))
	}
}

func FuzzSplitClaims(f *testing.F) {
	for _, s := range splitClaimsSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) { checkSplitClaims(t, payload) })
}

func checkSplitClaims(t *testing.T, payload []byte) {
	t.Helper()
	rc, err := splitClaims(payload)
	ref, refErr := splitClaimsReference(payload)
	if !json.Valid(payload) || !utf8.Valid(payload) {
		// The streaming reference may meet a duplicate before the syntax
		// error; splitClaims validates first.
		if err != errClaimsJSON {
			t.Fatalf("%q: splitClaims error %v, want %v", payload, err, errClaimsJSON)
		}
		if refErr == nil {
			t.Fatalf("%q: reference accepted invalid JSON", payload)
		}
		return
	}
	if !errors.Is(err, refErr) || !errors.Is(refErr, err) {
		t.Fatalf("%q: splitClaims error %v, reference %v", payload, err, refErr)
	}
	if err != nil {
		return
	}
	for name, got := range rc.byName() {
		if want := ref[name]; got != want {
			t.Fatalf("%q: claim %q = %q, reference %q", payload, name, got, want)
		}
	}
	// arrayElems agrees with encoding/json on every array claim.
	for name, raw := range rc.byName() {
		if raw == "" || raw[0] != '[' {
			continue
		}
		var want []json.RawMessage
		if err := json.Unmarshal([]byte(raw), &want); err != nil {
			t.Fatalf("claim %q: %v", name, err)
		}
		var got []string
		if !arrayElems(raw, func(e string) bool { got = append(got, e); return true }) {
			t.Fatalf("claim %q: arrayElems refused %q", name, raw)
		}
		var wantS []string
		for _, w := range want {
			wantS = append(wantS, string(w))
		}
		if !slices.Equal(got, wantS) {
			t.Fatalf("claim %q: elements %q, encoding/json %q", name, got, wantS)
		}
	}
	// jsonString agrees with encoding/json on every string claim.
	for name, raw := range rc.byName() {
		var want string
		wantOK := json.Unmarshal([]byte(raw), &want) == nil && raw != "" && raw[0] == '"'
		got, ok := jsonString(raw)
		if ok != wantOK || got != want {
			t.Fatalf("claim %q: jsonString(%q) = %q, %v; encoding/json %q, %v", name, raw, got, ok, want, wantOK)
		}
	}
}
