package jwtauth

import (
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4/json"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/extauthz/extauthz/upstreamtoken"
)

// accessClaims is the payload of an access token, decoded by go-jose's JSON
// decoder. Unlike encoding/json, that decoder matches member names exactly
// (encoding/json would read "SUB" as sub) and refuses an object that names a
// member twice, compared after unescaping ("tsid" and "t\u0073id" are one
// name), where encoding/json would keep the last: either way a token could
// say one thing to this service and another to the next reader.
//
// The registered claims that the library validates (iss, aud, exp, nbf, iat)
// keep the library's types, so one of the wrong type makes the claims
// malformed. The claims only this package reads are decoded untyped, so
// that one of the wrong type is refused by name; "sub" and "jti" are among
// them, not in the embedded jwt.Claims, for that reason (jti is never read:
// a non-string jti does not invalidate a token). A JSON null decodes as
// absent.
type accessClaims struct {
	jwt.Claims
	Subject   any
	ID        any
	ClientID  any
	AZP       any
	SessionID any
	Scope     any
	Scp       any
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

// decodeClaims decodes a verified payload. The payload must be one JSON
// object of valid UTF-8 with no member named twice at its top level.
func decodeClaims(payload []byte) (*accessClaims, error) {
	// The decoder would replace invalid UTF-8 with U+FFFD, giving two byte
	// strings one reading; RFC 7519 requires UTF-8.
	if !utf8.Valid(payload) {
		return nil, errClaimsJSON
	}
	// One pass splits the object into its members, refusing a repeated
	// name; each claim read is then decoded from its own member.
	var members map[string]json.RawMessage
	if err := json.Unmarshal(payload, &members); err != nil {
		return nil, claimsError(err)
	}
	c := new(accessClaims)
	for _, m := range [...]struct {
		name string
		dst  any
	}{
		{"iss", &c.Issuer}, {"aud", &c.Audience}, {"exp", &c.Expiry}, {"nbf", &c.NotBefore}, {"iat", &c.IssuedAt},
		{claimSubject, &c.Subject}, {claimID, &c.ID}, {claimClientID, &c.ClientID}, {claimAZP, &c.AZP},
		{claimSessionID, &c.SessionID}, {claimScope, &c.Scope}, {claimScp, &c.Scp},
	} {
		raw, ok := members[m.name]
		if !ok {
			continue
		}
		if err := json.Unmarshal(raw, m.dst); err != nil {
			return nil, claimsError(err)
		}
	}
	for _, d := range []*jwt.NumericDate{c.Expiry, c.NotBefore, c.IssuedAt} {
		if d != nil && (*d < 0 || *d > maxNumericDate) {
			return nil, errClaimsJSON
		}
	}
	return c, nil
}

// claimsError maps a decoding error to its rejection.
func claimsError(err error) error {
	switch {
	// The decoder's duplicate-member error has no type of its own, and its
	// text names the member: only its fixed prefix is read here.
	case strings.HasPrefix(err.Error(), "json: duplicate key "):
		return errDuplicateClaim
	case errors.Is(err, jwt.ErrUnmarshalAudience):
		return errAudience
	}
	return errClaimsJSON
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
