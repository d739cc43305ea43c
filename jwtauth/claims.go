package jwtauth

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/extauthz/extauthz/upstreamtoken"
)

// accessClaims is the payload of an access token, decoded in one pass by
// decodeClaims with the jsontext package of github.com/go-json-experiment/json
// (the mirror of encoding/json/v2). Unlike encoding/json, that decoding
// refuses an object that names a member twice, compared after unescaping
// ("tsid" and "t\u0073id" are one name), where encoding/json would keep the
// last; it refuses strings that are not valid UTF-8, an escaped lone
// surrogate ("\ud800") included, where encoding/json would read U+FFFD; and
// member names are matched exactly (encoding/json would read "SUB" as sub):
// either way a token could say one thing to this service and another to the
// next reader. A name repeated within a member that this package does not
// read is not refused.
//
// The registered claims that go-jose validates (iss, aud, exp, nbf, iat) keep
// the library's types and are read as its decoder reads them (the dates by
// jwt.NumericDate itself), so one of the wrong type makes the claims
// malformed, and an aud that is neither a string nor an array of strings,
// null included, is an audience mismatch. The claims only this package reads
// are decoded untyped, as encoding/json decodes into an interface value, so
// that one of the wrong type is refused by name; "sub" and "jti" are among
// them, not in the embedded jwt.Claims, for that reason (jti is never read: a
// non-string jti does not invalidate a token). A JSON null decodes as absent
// (but for aud).
type accessClaims struct {
	jwt.Claims
	Subject   any
	ID        any
	ClientID  any
	AZP       any
	SessionID any
	Scope     any
	Scp       any

	// dates holds the values that Expiry, NotBefore and IssuedAt point to.
	dates [3]jwt.NumericDate
}

// Claim names this package reads besides the registered claims the library
// validates. The session ID claim is named by the token swap's contract.
const (
	claimSubject   = "sub"
	claimID        = "jti"
	claimClientID  = "client_id"
	claimAZP       = "azp"
	claimSessionID = upstreamtoken.TokenSessionIDClaimKey
	claimScope     = "scope"
	claimScp       = "scp"
)

// maxNumericDate is 9999-12-31T23:59:59Z. The library accepts dates up to
// 2^62 seconds and before the epoch; dates outside 1970 to 9999 are refused
// as malformed, since no issuer means them and later code formats them.
const maxNumericDate = 253402300799

// claimFields are the members that decodeClaims reads, each with the
// function that stores its JSON value in the claims. When several members
// are invalid, the first of them in this order names the error.
var claimFields = [...]struct {
	name string
	set  func(c *accessClaims, v jsontext.Value) error
}{
	{"iss", (*accessClaims).setIssuer},
	{"aud", (*accessClaims).setAudience},
	{"exp", func(c *accessClaims, v jsontext.Value) error { return c.setDate(&c.Expiry, 0, v) }},
	{"nbf", func(c *accessClaims, v jsontext.Value) error { return c.setDate(&c.NotBefore, 1, v) }},
	{"iat", func(c *accessClaims, v jsontext.Value) error { return c.setDate(&c.IssuedAt, 2, v) }},
	{claimSubject, func(c *accessClaims, v jsontext.Value) error { return setUntyped(&c.Subject, v) }},
	{claimID, func(c *accessClaims, v jsontext.Value) error { return setUntyped(&c.ID, v) }},
	{claimClientID, func(c *accessClaims, v jsontext.Value) error { return setUntyped(&c.ClientID, v) }},
	{claimAZP, func(c *accessClaims, v jsontext.Value) error { return setUntyped(&c.AZP, v) }},
	{claimSessionID, func(c *accessClaims, v jsontext.Value) error { return setUntyped(&c.SessionID, v) }},
	{claimScope, func(c *accessClaims, v jsontext.Value) error { return setUntyped(&c.Scope, v) }},
	{claimScp, func(c *accessClaims, v jsontext.Value) error { return setUntyped(&c.Scp, v) }},
}

// claimsDecoder is a reusable decoder of payloads: pooled, so that decoding
// a payload allocates only what the claims keep.
type claimsDecoder struct {
	in  bytes.Reader
	dec jsontext.Decoder
}

var claimsDecoders = sync.Pool{New: func() any { return new(claimsDecoder) }}

// decodeClaims decodes a verified payload. The payload must be one JSON
// object of valid UTF-8, with white space around it at most, that names no
// member twice at its top level nor within the value of a claim it reads
// (a name repeated within another member is no error). Its errors, the
// first that applies:
//   - errClaimsJSON when the payload is not such an object, repeats aside;
//   - errDuplicateClaim for a name repeated at its top level;
//   - for the first invalid claim in the order of claimFields: errAudience
//     for an aud of the wrong type, errDuplicateClaim for a name repeated
//     within the claim's value, errClaimsJSON otherwise;
//   - errClaimsJSON for a date outside 1970 to 9999.
func decodeClaims(payload []byte) (*accessClaims, error) {
	c, err := decodeClaimsWith(payload, nil)
	if errors.Is(err, jsontext.ErrDuplicateName) {
		// A name repeated somewhere: decode again, telling a top-level
		// repeat from one in a member's value.
		c, err = decodeClaimsWith(payload, map[string]bool{})
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrInvalidToken):
		return nil, err
	default:
		return nil, errClaimsJSON
	}
	for _, d := range []*jwt.NumericDate{c.Expiry, c.NotBefore, c.IssuedAt} {
		if d != nil && (*d < 0 || *d > maxNumericDate) {
			return nil, errClaimsJSON
		}
	}
	return c, nil
}

// decodeClaimsWith decodes payload with a pooled decoder. With names nil,
// the decoder refuses a name repeated at any depth with an error wrapping
// jsontext.ErrDuplicateName; otherwise it allows them, and decode collects
// the top-level names in names to refuse a repeat among them.
func decodeClaimsWith(payload []byte, names map[string]bool) (*accessClaims, error) {
	d := claimsDecoders.Get().(*claimsDecoder)
	d.in.Reset(payload)
	if names == nil {
		d.dec.Reset(&d.in)
	} else {
		d.dec.Reset(&d.in, jsontext.AllowDuplicateNames(true))
	}
	c := new(accessClaims)
	err := c.decode(&d.dec, names)
	// Keep no reference to the payload in the pool.
	d.in.Reset(nil)
	d.dec.Reset(&d.in)
	claimsDecoders.Put(d)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// decode reads one object from dec, and nothing after it, into c. It
// returns the decoder's error, or errClaimsJSON, when the input is not such
// an object; then, when names is not nil, errDuplicateClaim for a top-level
// name already in names (each name is added); then the error of the first
// invalid claim in the order of claimFields.
func (c *accessClaims) decode(dec *jsontext.Decoder, names map[string]bool) error {
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return errClaimsJSON
	}
	var claimErr error
	claimErrAt := len(claimFields)
	repeated := false
	for dec.PeekKind() != '}' {
		name, err := dec.ReadValue()
		if err != nil {
			return err
		}
		if names != nil {
			n := unquote(name)
			repeated = repeated || names[n]
			names[n] = true
		}
		i := claimField(name)
		if i < 0 {
			if err := dec.SkipValue(); err != nil {
				return err
			}
			continue
		}
		val, err := dec.ReadValue()
		if err != nil {
			return err
		}
		if err := claimFields[i].set(c, val); err != nil && i < claimErrAt {
			claimErr, claimErrAt = err, i
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return errClaimsJSON
	}
	if repeated {
		return errDuplicateClaim
	}
	return claimErr
}

// claimField returns the index in claimFields of the member named by the
// JSON string name, or -1.
func claimField(name jsontext.Value) int {
	n := name[1 : len(name)-1]
	if bytes.IndexByte(n, '\\') >= 0 {
		var err error
		if n, err = jsontext.AppendUnquote(nil, name); err != nil {
			return -1
		}
	}
	for i, f := range claimFields {
		if string(n) == f.name {
			return i
		}
	}
	return -1
}

// unquote returns the string that the valid JSON string v encodes.
func unquote(v jsontext.Value) string {
	s := v[1 : len(v)-1]
	if bytes.IndexByte(s, '\\') >= 0 {
		s, _ = jsontext.AppendUnquote(nil, v)
	}
	return string(s)
}

// setIssuer reads iss, a string or null, as go-jose's decoder reads it.
func (c *accessClaims) setIssuer(v jsontext.Value) error {
	switch v.Kind() {
	case '"':
		c.Issuer = unquote(v)
	case 'n':
	default:
		return errClaimsJSON
	}
	return nil
}

// setAudience reads aud, a string or an array of strings, as go-jose's
// jwt.Audience reads it: any other value that decodes is errAudience.
func (c *accessClaims) setAudience(v jsontext.Value) error {
	if v.Kind() == '"' {
		c.Audience = jwt.Audience{unquote(v)}
		return nil
	}
	var untyped any
	if err := setUntyped(&untyped, v); err != nil {
		return err
	}
	list, ok := untyped.([]any)
	if !ok {
		return errAudience
	}
	aud := make(jwt.Audience, len(list))
	for i, e := range list {
		if aud[i], ok = e.(string); !ok {
			return errAudience
		}
	}
	c.Audience = aud
	return nil
}

// setDate reads exp, nbf or iat, a number or null, with go-jose's
// jwt.NumericDate, into *dst; slot is its index in c.dates.
func (c *accessClaims) setDate(dst **jwt.NumericDate, slot int, v jsontext.Value) error {
	if v.Kind() == 'n' {
		return nil
	}
	if err := c.dates[slot].UnmarshalJSON(v); err != nil {
		return errClaimsJSON
	}
	*dst = &c.dates[slot]
	return nil
}

// setUntyped reads v as encoding/json decodes into an interface value:
// null as nil, then bool, float64, string, []any and map[string]any. A
// name repeated in an object within v is errDuplicateClaim, else a number
// beyond the range of float64 is errClaimsJSON.
func setUntyped(dst *any, v jsontext.Value) error {
	switch v.Kind() {
	case 'n':
		*dst = nil
	case '"':
		*dst = unquote(v)
	case 't':
		*dst = true
	case 'f':
		*dst = false
	default:
		var x any
		if err := json.Unmarshal(v, &x); err != nil {
			// v is valid JSON but for, perhaps, a repeated name.
			if !v.IsValid() {
				return errDuplicateClaim
			}
			return errClaimsJSON
		}
		*dst = x
	}
	return nil
}

// checkClaims decodes and validates the verified payload and extracts the
// Claims.
func (v *Verifier) checkClaims(payload []byte) (Claims, error) {
	c, err := decodeClaims(payload)
	if err != nil {
		return Claims{}, err
	}
	now := v.now()
	err = c.ValidateWithLeeway(jwt.Expected{Issuer: v.issuer, AnyAudience: v.audiences, Time: now}, v.leeway)
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return Claims{}, errIssuer
	case errors.Is(err, jwt.ErrInvalidAudience):
		return Claims{}, errAudience
	case errors.Is(err, jwt.ErrNotValidYet):
		return Claims{}, errNotYetValid
	case errors.Is(err, jwt.ErrExpired):
		return Claims{}, errExpired
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return Claims{}, errIssuedInFuture
	default:
		return Claims{}, errClaimsJSON
	}
	// The library takes exp as optional, and still accepts a token at the
	// instant exp plus the leeway; an access token must expire, and it is
	// valid only while now is before exp (RFC 7519 section 4.1.4).
	if c.Expiry == nil {
		return Claims{}, errExpMissing
	}
	exp := c.Expiry.Time().UTC()
	if !now.Before(exp.Add(v.leeway)) {
		return Claims{}, errExpired
	}

	sub, ok := c.Subject.(string)
	if !ok || sub == "" {
		return Claims{}, errSubject
	}
	clientID, ok := c.clientID()
	if !ok {
		return Claims{}, errClientID
	}
	tsid, ok := c.SessionID.(string)
	if (!ok || tsid == "") && !(v.noSession && c.SessionID == nil) {
		return Claims{}, errSessionID
	}
	scopes, ok := c.scopes()
	if !ok {
		return Claims{}, errScope
	}
	return Claims{Subject: sub, ClientID: clientID, SessionID: tsid, Scopes: scopes, ExpiresAt: exp}, nil
}

// clientID returns "client_id" or, when it is absent or empty, "azp". Each
// must be a string when present; the result must be non-empty.
func (c *accessClaims) clientID() (string, bool) {
	id, ok := c.ClientID.(string)
	if !ok && c.ClientID != nil {
		return "", false
	}
	azp, ok := c.AZP.(string)
	if !ok && c.AZP != nil {
		return "", false
	}
	if id == "" {
		id = azp
	}
	return id, id != ""
}

// scopes returns the space-separated "scope" claim or, without it, the
// "scp" claim (a space-separated string or an array of strings, of which
// empty ones are skipped). A present claim of another type is an error,
// even when the other claim is used.
func (c *accessClaims) scopes() ([]string, bool) {
	var scopes []string
	switch s := c.Scope.(type) {
	case nil:
	case string:
		scopes = strings.Fields(s)
	default:
		return nil, false
	}
	var fromScp []string
	switch s := c.Scp.(type) {
	case nil:
	case string:
		fromScp = strings.Fields(s)
	case []any:
		for _, e := range s {
			str, ok := e.(string)
			if !ok {
				return nil, false
			}
			if str != "" {
				fromScp = append(fromScp, str)
			}
		}
	default:
		return nil, false
	}
	if c.Scope == nil {
		scopes = fromScp
	}
	if len(scopes) == 0 {
		return nil, true
	}
	return scopes, true
}
