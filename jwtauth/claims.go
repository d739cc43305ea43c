package jwtauth

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// rawClaims holds the JSON text of the claims the verifier reads, as
// substrings of the payload. "" means the claim is absent (a JSON null is
// present, as "null").
type rawClaims struct {
	iss, aud, exp, nbf, iat  string
	sub, clientID, azp, tsid string
	scope, scp               string
}

// maxLinearKeys is how many claim names are checked for duplicates by a
// linear scan before switching to a map.
const maxLinearKeys = 32

// splitClaims reads the top-level members of payload, which must be a single
// JSON object of valid UTF-8, and refuses any member name that occurs twice
// (compared after unescaping: "sub" and "s\u0075b" are the same name). Claim
// names match exactly, not case-insensitively as encoding/json's struct
// decoding would.
//
// The payload is validated by json.Valid first; the walk below then only
// has to find the boundaries of well-formed values, and does so without
// copying: the returned values are substrings of one string conversion of
// the payload, which the extracted claims share.
func splitClaims(payload []byte) (rawClaims, error) {
	var rc rawClaims
	if !utf8.Valid(payload) || !json.Valid(payload) {
		return rc, errClaimsJSON
	}
	p := string(payload)
	i := skipSpace(p, 0)
	if i >= len(p) || p[i] != '{' {
		return rc, errClaimsJSON
	}
	i = skipSpace(p, i+1)
	if i < len(p) && p[i] == '}' {
		return rc, nil
	}
	var (
		linear [maxLinearKeys]string
		n      int
		seen   map[string]struct{}
	)
	for {
		end := valueEnd(p, i)
		if end < 0 || p[i] != '"' {
			return rc, errClaimsJSON
		}
		name, ok := jsonString(p[i:end])
		if !ok {
			return rc, errClaimsJSON
		}
		if seen == nil {
			for _, s := range linear[:n] {
				if s == name {
					return rc, errDuplicateClaim
				}
			}
			if n < maxLinearKeys {
				linear[n] = name
				n++
			} else {
				seen = make(map[string]struct{}, 2*maxLinearKeys)
				for _, s := range linear {
					seen[s] = struct{}{}
				}
				seen[name] = struct{}{}
			}
		} else {
			if _, dup := seen[name]; dup {
				return rc, errDuplicateClaim
			}
			seen[name] = struct{}{}
		}

		i = skipSpace(p, end)
		if i >= len(p) || p[i] != ':' {
			return rc, errClaimsJSON
		}
		i = skipSpace(p, i+1)
		end = valueEnd(p, i)
		if end < 0 {
			return rc, errClaimsJSON
		}
		val := p[i:end]
		switch name {
		case "iss":
			rc.iss = val
		case "aud":
			rc.aud = val
		case "exp":
			rc.exp = val
		case "nbf":
			rc.nbf = val
		case "iat":
			rc.iat = val
		case "sub":
			rc.sub = val
		case "client_id":
			rc.clientID = val
		case "azp":
			rc.azp = val
		case sessionIDClaim:
			rc.tsid = val
		case "scope":
			rc.scope = val
		case "scp":
			rc.scp = val
		}

		i = skipSpace(p, end)
		if i >= len(p) {
			return rc, errClaimsJSON
		}
		switch p[i] {
		case '}':
			return rc, nil
		case ',':
			i = skipSpace(p, i+1)
		default:
			return rc, errClaimsJSON
		}
	}
}

// skipSpace returns the index of the first non-whitespace byte of p at or
// after i (len(p) if none).
func skipSpace(p string, i int) int {
	for i < len(p) {
		switch p[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// valueEnd returns the index just past the JSON value that starts at p[i],
// or -1 if the input ends first. It relies on p having passed json.Valid and
// only finds the boundary: strings end at the first unescaped quote, arrays
// and objects at their matching bracket (brackets inside strings skipped),
// and numbers and literals at the next delimiter.
func valueEnd(p string, i int) int {
	if i >= len(p) {
		return -1
	}
	switch p[i] {
	case '"':
		for j := i + 1; j < len(p); j++ {
			switch p[j] {
			case '\\':
				j++ // skip the escaped byte; \uXXXX needs no special care
			case '"':
				return j + 1
			}
		}
		return -1
	case '{', '[':
		depth := 0
		for j := i; j < len(p); j++ {
			switch p[j] {
			case '"':
				e := valueEnd(p, j)
				if e < 0 {
					return -1
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	default:
		j := i
		for j < len(p) {
			switch p[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return j
			}
			j++
		}
		return j
	}
}

// arrayElems calls f with the JSON text of each element of the array raw (as
// returned by splitClaims) and stops early when f returns false. It reports
// whether raw is an array and every call returned true.
func arrayElems(raw string, f func(elem string) bool) bool {
	if raw == "" || raw[0] != '[' {
		return false
	}
	i := skipSpace(raw, 1)
	if i < len(raw) && raw[i] == ']' {
		return true
	}
	for i < len(raw) {
		end := valueEnd(raw, i)
		if end < 0 || !f(raw[i:end]) {
			return false
		}
		i = skipSpace(raw, end)
		if i >= len(raw) {
			return false
		}
		if raw[i] == ']' {
			return true
		}
		if raw[i] != ',' {
			return false
		}
		i = skipSpace(raw, i+1)
	}
	return false
}

// checkClaims validates the verified payload and extracts the Claims.
func (v *Verifier) checkClaims(payload []byte) (Claims, error) {
	rc, err := splitClaims(payload)
	if err != nil {
		return Claims{}, err
	}

	iss, ok := jsonString(rc.iss)
	if !ok || iss != v.issuer {
		return Claims{}, errIssuer
	}
	if !v.audienceMatches(rc.aud) {
		return Claims{}, errAudience
	}

	now := v.now()
	if rc.exp == "" {
		return Claims{}, errExpMissing
	}
	exp, ok := numericDate(rc.exp)
	if !ok {
		return Claims{}, errClaimsJSON
	}
	// Valid while now < exp (RFC 7519 4.1.4), stretched by the leeway.
	if !now.Before(exp.Add(v.leeway)) {
		return Claims{}, errExpired
	}
	if rc.nbf != "" {
		nbf, ok := numericDate(rc.nbf)
		if !ok {
			return Claims{}, errClaimsJSON
		}
		if now.Add(v.leeway).Before(nbf) {
			return Claims{}, errNotYetValid
		}
	}
	if rc.iat != "" {
		iat, ok := numericDate(rc.iat)
		if !ok {
			return Claims{}, errClaimsJSON
		}
		if now.Add(v.leeway).Before(iat) {
			return Claims{}, errIssuedInFuture
		}
	}

	sub, ok := jsonString(rc.sub)
	if !ok || sub == "" {
		return Claims{}, errSubject
	}
	clientID, ok := clientIDOf(rc)
	if !ok {
		return Claims{}, errClientID
	}
	tsid, ok := jsonString(rc.tsid)
	if !ok || tsid == "" {
		return Claims{}, errSessionID
	}
	scopes, ok := scopesOf(rc)
	if !ok {
		return Claims{}, errScope
	}
	return Claims{
		Subject:   sub,
		ClientID:  clientID,
		SessionID: tsid,
		Scopes:    scopes,
		ExpiresAt: exp,
	}, nil
}

// clientIDOf returns "client_id" or, when it is absent or empty, "azp". Each
// must be a string when present; the result must be non-empty.
func clientIDOf(rc rawClaims) (string, bool) {
	var id string
	if rc.clientID != "" {
		s, ok := jsonString(rc.clientID)
		if !ok {
			return "", false
		}
		id = s
	}
	if rc.azp != "" {
		s, ok := jsonString(rc.azp)
		if !ok {
			return "", false
		}
		if id == "" {
			id = s
		}
	}
	return id, id != ""
}

// scopesOf returns the space-separated "scope" claim or, without it, the
// "scp" claim (a space-separated string or an array of strings). A present
// claim of another type is an error, even when the other claim is used.
func scopesOf(rc rawClaims) ([]string, bool) {
	var scopes []string
	if rc.scope != "" {
		s, ok := jsonString(rc.scope)
		if !ok {
			return nil, false
		}
		scopes = strings.Fields(s)
	}
	if rc.scp != "" {
		var fromScp []string
		if s, ok := jsonString(rc.scp); ok {
			fromScp = strings.Fields(s)
		} else {
			ok := arrayElems(rc.scp, func(e string) bool {
				s, ok := jsonString(e)
				if ok && s != "" {
					fromScp = append(fromScp, s)
				}
				return ok
			})
			if !ok {
				return nil, false
			}
		}
		if rc.scope == "" {
			scopes = fromScp
		}
	}
	if len(scopes) == 0 {
		return nil, true
	}
	return scopes, true
}

// audienceMatches reports whether aud, a string or an array of strings, holds
// one of the configured audiences. Any other type, or an array element that
// is not a string, is a mismatch.
func (v *Verifier) audienceMatches(aud string) bool {
	if s, ok := jsonString(aud); ok {
		return v.acceptsAudience(s)
	}
	found := false
	return arrayElems(aud, func(e string) bool {
		s, ok := jsonString(e)
		if ok && v.acceptsAudience(s) {
			found = true
		}
		return ok
	}) && found
}

func (v *Verifier) acceptsAudience(s string) bool {
	for _, a := range v.audiences {
		if s == a {
			return true
		}
	}
	return false
}

// jsonString decodes raw, the text of a valid JSON value, when it is a
// string; null, numbers, booleans, arrays and objects are not strings. A
// string without escapes is returned as a substring of raw, without copying.
func jsonString(raw string) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	if strings.IndexByte(inner, '\\') < 0 {
		return inner, true
	}
	var s string
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		return "", false
	}
	return s, true
}

// maxNumericDate is 9999-12-31T23:59:59Z; later (or negative) dates are refused
// as malformed rather than risk overflowing time arithmetic.
const maxNumericDate = 253402300799

// numericDate decodes an RFC 7519 NumericDate: a JSON number of seconds since
// the epoch, possibly fractional, from 0 to maxNumericDate.
func numericDate(raw string) (time.Time, bool) {
	if raw == "" || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return time.Time{}, false
	}
	// Fast path: a plain integer of at most 12 digits.
	if len(raw) <= 12 {
		var n int64
		digits := true
		for i := 0; i < len(raw); i++ {
			c := raw[i]
			if c < '0' || c > '9' {
				digits = false
				break
			}
			n = n*10 + int64(c-'0')
		}
		if digits {
			if n > maxNumericDate {
				return time.Time{}, false
			}
			return time.Unix(n, 0).UTC(), true
		}
	}
	f, err := strconv.ParseFloat(raw, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
}
