// Package jwtauth verifies the access-token JWT that a client presents to
// extauthz: the signature against the authorization server's JSON Web Key Set
// (JWKS), the issuer, the audience, the validity window, and the claims the
// token swap needs (sub, client_id or azp, and the token session ID tsid).
//
// Only asymmetric signature algorithms are accepted (RS256/384/512,
// PS256/384/512, ES256/384/512, EdDSA). The key is chosen by the token's
// "kid" header from the configured key set; "jku", "x5u", "x5c" and embedded
// "jwk" headers are ignored and never fetched or trusted. Tokens must be in
// JWS compact serialization; encrypted tokens (JWE) are refused.
//
// Parsing, the signature check and the registered claims (iss, aud, exp,
// nbf and iat, with the leeway) are the work of go-jose
// (github.com/go-jose/go-jose/v4 and its jwt package). This package adds what
// that library leaves to its callers: one accepted spelling per token, the
// claims the token swap reads, the key set (fetched, cached, and refetched
// under a rate limit when a token names an unknown key), and a bounded cache
// of verified tokens.
//
// Every rejection of a token wraps ErrInvalidToken. When the key set is
// served from a URL that could not be fetched yet, Verify returns an error
// wrapping ErrKeysUnavailable instead: the token may be fine and the caller
// should answer "try again later" (503) rather than 401. Error messages name
// the check that failed but never contain the token or its claims.
package jwtauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/extauthz/extauthz/internal/setting"
)

var (
	// ErrInvalidToken is wrapped by every rejection of the token itself:
	// malformed, badly signed, expired, wrong issuer or audience, missing or
	// mistyped claims, unknown key ID.
	ErrInvalidToken = errors.New("jwtauth: invalid token")
	// ErrKeysUnavailable means the JWKS could not be fetched and no cached
	// key set exists to decide with (or the caller's context ended while
	// waiting for a fetch). It says nothing about the token; the same call
	// may succeed later.
	ErrKeysUnavailable = errors.New("jwtauth: signing keys unavailable")
)

// Defaults applied to zero Config fields.
const (
	DefaultMaxTokenBytes      = 16 << 10
	DefaultMinRefetchInterval = 30 * time.Second
	DefaultKeySetMaxAge       = 10 * time.Minute
	DefaultHTTPTimeout        = 10 * time.Second
)

// allowedAlgs is the signature algorithm allow-list handed to the JWS parser:
// asymmetric algorithms only, so "none" and the HMAC family (and with them
// the classic "HS256 keyed with the RSA public key" confusion) never reach
// signature verification.
var allowedAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// minRSABits is the smallest RSA modulus accepted for verification.
const minRSABits = 2048

// Config configures a Verifier. Issuer, Audiences and exactly one of JWKSURL
// and JWKSFile are required; every other zero field takes its default.
type Config struct {
	// Issuer must equal the token's "iss" claim exactly.
	Issuer string
	// Audiences must contain at least one of the values of the token's "aud"
	// claim (a string or an array of strings).
	Audiences []string
	// JWKSURL is an http or https URL serving the issuer's JWKS. It is
	// fetched on first use, cached, refetched (rate limited) when a token
	// names an unknown key ID, and refreshed in the background once the
	// cached copy is older than KeySetMaxAge.
	JWKSURL string
	// JWKSFile is a file holding the JWKS. It is read once, by New.
	JWKSFile string
	// Leeway is the clock skew tolerated on "exp", "nbf" and "iat", at most
	// MaxLeeway.
	Leeway time.Duration
	// Now returns the current time; nil means time.Now. It also drives the
	// JWKS refetch rate limit and cache age.
	Now func() time.Time
	// HTTPClient fetches JWKSURL; nil means a client with a 10 s time-out.
	// A client without a time-out is given a 10 s deadline per fetch.
	HTTPClient *http.Client
	// MinRefetchInterval is the least time between two JWKS fetches
	// triggered by unknown key IDs (or by the cache age); 0 means 30 s.
	// While no key set has been fetched yet, a failed fetch is retried after
	// at most 1 s.
	MinRefetchInterval time.Duration
	// KeySetMaxAge is the age after which a cached JWKS is refreshed in the
	// background (the cached set stays in use meanwhile, and when the
	// refresh fails); 0 means 10 min.
	KeySetMaxAge time.Duration
	// MaxTokenBytes bounds the length of a token; longer tokens are refused
	// before parsing. 0 means 16 KiB.
	MaxTokenBytes int
	// CacheSize is how many verified tokens Verify remembers, keyed by the
	// SHA-256 of the whole token, so that a token presented again costs a
	// hash and a map look-up instead of a signature check; 0 disables the
	// cache. A cached token is accepted exactly as long as Verify would
	// accept it: until its exp plus Leeway, and while the key set still
	// holds the key that verified it. The least recently used tokens are
	// evicted beyond CacheSize (each takes a few hundred bytes).
	CacheSize int
	// WithoutSession verifies tokens that name no session: the
	// client-credentials tokens that callers of the session API present.
	// The "tsid" claim is then not required (Claims.SessionID holds it when
	// present). A Verifier of users' tokens must leave it false.
	WithoutSession bool
}

// Claims are the verified claims of an access token. Claim names match
// exactly (case-sensitively), a claim whose value is JSON null counts as
// absent, and a token whose claims name any member twice is refused.
type Claims struct {
	// Subject is the "sub" claim, a non-empty string.
	Subject string
	// ClientID is the "client_id" claim or, when that is absent or empty,
	// the "azp" claim: a non-empty string. Either claim, when present, must
	// be a string.
	ClientID string
	// SessionID is the "tsid" claim (upstreamtoken.TokenSessionIDClaimKey),
	// a non-empty string.
	SessionID string
	// Scopes are the space-separated "scope" claim or, without it, the "scp"
	// claim (a string or an array of strings). It is nil when there are
	// none.
	Scopes []string
	// ExpiresAt is the "exp" claim (without leeway) to the second: a
	// fractional part is dropped, so the token expires up to a second
	// early rather than late.
	ExpiresAt time.Time
}

// KeySet supplies the public keys that verify token signatures.
// Implementations must be safe for concurrent use.
type KeySet interface {
	// VerificationKey returns the public key (*rsa.PublicKey,
	// *ecdsa.PublicKey or ed25519.PublicKey) for a token whose protected
	// header names the key ID kid ("" when it names none) and the algorithm
	// alg. When kid is "", a set holding exactly one key usable with alg may
	// return that key. An unknown or unusable key is an error wrapping
	// ErrInvalidToken; being unable to decide (no key set could be loaded)
	// is an error wrapping ErrKeysUnavailable.
	VerificationKey(ctx context.Context, kid, alg string) (crypto.PublicKey, error)
}

// Verifier verifies access tokens. It is safe for concurrent use.
type Verifier struct {
	issuer        string
	audiences     jwt.Audience
	leeway        time.Duration
	now           func() time.Time
	maxTokenBytes int
	keys          KeySet
	cache         *tokenCache // nil when disabled
	noSession     bool
}

// New validates cfg (see Config.Validate), reporting every problem at once,
// and returns a Verifier. A JWKSFile is read and parsed now and must hold at
// least one usable public signing key (a private or symmetric key in the
// file is an error). A JWKSURL is not contacted by New, so the service can
// start while the JWKS endpoint is briefly down; call Prefetch to load it
// eagerly. ctx is not retained.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	errs := []error{setting.Prefixed("jwtauth: ", cfg.Validate())}
	var keys KeySet
	switch {
	case cfg.JWKSFile != "" && cfg.JWKSURL == "":
		ks, err := loadKeySetFile(cfg.JWKSFile)
		errs = append(errs, err)
		keys = ks
	case cfg.JWKSURL != "" && cfg.JWKSFile == "":
		keys = newRemoteKeySet(cfg)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return newVerifier(cfg, keys), nil
}

// NewWithKeySet is New with the keys supplied by keys instead of JWKSURL or
// JWKSFile, which must both be empty. It serves tests and callers with their
// own key management.
func NewWithKeySet(cfg Config, keys KeySet) (*Verifier, error) {
	errs := []error{setting.Prefixed("jwtauth: ", errors.Join(cfg.validate()...))}
	if cfg.JWKSURL != "" || cfg.JWKSFile != "" {
		errs = append(errs, errors.New("jwtauth: JWKSURL and JWKSFile must be empty when a KeySet is given"))
	}
	if keys == nil {
		errs = append(errs, errors.New("jwtauth: KeySet is nil"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return newVerifier(cfg, keys), nil
}

// MaxLeeway is the largest Config.Leeway accepted.
const MaxLeeway = 5 * time.Minute

// Validate reports every problem of cfg for New, joined, each a
// *setting.Error named by the configuration key of its field: issuer
// (required), audiences (at least one, none empty), exactly one of jwks_url
// (an absolute http or https URL) and jwks_file, leeway (0 to MaxLeeway),
// and the limits that must not be negative. It reads no file: New does.
func (cfg Config) Validate() error {
	errs := cfg.validate()
	switch {
	case cfg.JWKSURL != "" && cfg.JWKSFile != "":
		errs = append(errs, setting.Errorf("", "set only one of jwks_url and jwks_file"))
	case cfg.JWKSURL == "" && cfg.JWKSFile == "":
		errs = append(errs, setting.Errorf("", "one of jwks_url or jwks_file is required"))
	case cfg.JWKSURL != "":
		if !isHTTPURL(cfg.JWKSURL) {
			errs = append(errs, setting.Errorf("jwks_url", " must be an absolute http(s) URL"))
		}
	}
	return errors.Join(errs...)
}

// validate checks what New and NewWithKeySet have in common.
func (cfg Config) validate() []error {
	var errs []error
	if cfg.Issuer == "" {
		errs = append(errs, setting.Errorf("issuer", " is required"))
	}
	if len(cfg.Audiences) == 0 {
		errs = append(errs, setting.Errorf("audiences", " needs at least one audience"))
	}
	for i, a := range cfg.Audiences {
		if a == "" {
			errs = append(errs, setting.Errorf(fmt.Sprintf("audiences[%d]", i), " is empty"))
		}
	}
	if cfg.Leeway < 0 || cfg.Leeway > MaxLeeway {
		errs = append(errs, setting.Errorf("leeway", " must be between 0 and %v", MaxLeeway))
	}
	for _, f := range []struct {
		key string
		v   int64
	}{
		{"min_refetch_interval", int64(cfg.MinRefetchInterval)}, {"key_set_max_age", int64(cfg.KeySetMaxAge)},
		{"max_token_bytes", int64(cfg.MaxTokenBytes)}, {"cache_size", int64(cfg.CacheSize)},
	} {
		if f.v < 0 {
			errs = append(errs, setting.Errorf(f.key, " must not be negative"))
		}
	}
	return errs
}

// isHTTPURL reports whether raw is an absolute http or https URL with a
// host.
func isHTTPURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func newVerifier(cfg Config, keys KeySet) *Verifier {
	v := &Verifier{
		issuer:        cfg.Issuer,
		audiences:     jwt.Audience(slices.Clone(cfg.Audiences)),
		leeway:        cfg.Leeway,
		now:           cfg.Now,
		maxTokenBytes: cfg.MaxTokenBytes,
		keys:          keys,
		noSession:     cfg.WithoutSession,
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.maxTokenBytes == 0 {
		v.maxTokenBytes = DefaultMaxTokenBytes
	}
	if cfg.CacheSize > 0 {
		v.cache = newTokenCache(cfg.CacheSize)
	}
	return v
}

// Prefetch loads the key set now when it comes from a JWKSURL and none is
// cached yet, waiting at most until ctx is done. It returns nil when a key
// set is available, and an error wrapping ErrKeysUnavailable otherwise. It is
// optional (Verify fetches on demand) and meant for start-up and readiness
// checks. With JWKSFile or a custom KeySet it returns nil.
func (v *Verifier) Prefetch(ctx context.Context) error {
	r, ok := v.keys.(*remoteKeySet)
	if !ok {
		return nil
	}
	return r.prefetch(ctx)
}

// Rejections. They are fixed values so that rejecting costs no allocation,
// and they never carry token content.
var (
	errEmpty          = invalid("empty token")
	errTooLarge       = invalid("token too large")
	errMalformed      = invalid("malformed token")
	errEncrypted      = invalid("encrypted tokens (JWE) are not accepted")
	errAlg            = invalid("signature algorithm not allowed")
	errCritical       = invalid("unsupported critical header")
	errUnknownKey     = invalid("unknown kid")
	errAmbiguousKey   = invalid("no kid and several candidate keys")
	errKeyMismatch    = invalid("key does not match the signature algorithm")
	errSignature      = invalid("signature invalid")
	errClaimsJSON     = invalid("malformed claims")
	errDuplicateClaim = invalid("duplicate claim")
	errIssuer         = invalid("issuer mismatch")
	errAudience       = invalid("audience mismatch")
	errExpMissing     = invalid("exp missing")
	errExpired        = invalid("expired")
	errNotYetValid    = invalid("not yet valid (nbf)")
	errIssuedInFuture = invalid("issued in the future (iat)")
	errSubject        = invalid("sub missing or not a non-empty string")
	errClientID       = invalid("client_id/azp missing or not a non-empty string")
	errSessionID      = invalid(claimSessionID + " missing or not a non-empty string")
	errScope          = invalid("scope/scp has the wrong type")
)

func invalid(reason string) error { return fmt.Errorf("%w: %s", ErrInvalidToken, reason) }

// Verify checks raw, a JWT in JWS compact serialization (without any
// "Bearer " prefix), and returns its claims. A rejected token yields an error
// wrapping ErrInvalidToken; a key set that cannot be loaded yields one
// wrapping ErrKeysUnavailable. ctx bounds any JWKS fetch the call waits for.
//
// With Config.CacheSize set, a token that passed is remembered (see
// Config.CacheSize); the Claims returned for it then share their Scopes
// slice with the cache and with every other caller: it must not be
// modified.
func (v *Verifier) Verify(ctx context.Context, raw string) (Claims, error) {
	if v.cache == nil {
		return v.verify(ctx, raw, nil)
	}
	// Bound the input before hashing it; a cached token passed this test.
	if len(raw) > v.maxTokenBytes {
		return Claims{}, errTooLarge
	}
	key := tokenKey(raw)
	if c, ok := v.cached(ctx, &key); ok {
		return c, nil
	}
	return v.verify(ctx, raw, &key)
}

// verify is Verify without the cache look-up. When cacheKey is not nil, a
// token that passes is added to the cache under it.
func (v *Verifier) verify(ctx context.Context, raw string, cacheKey *[sha256.Size]byte) (Claims, error) {
	if err := checkCompact(raw, v.maxTokenBytes); err != nil {
		return Claims{}, err
	}
	jws, err := jose.ParseSignedCompact(raw, allowedAlgs)
	if err != nil {
		// The parser's message may quote header content: do not wrap it.
		var algErr *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &algErr) {
			return Claims{}, errAlg
		}
		return Claims{}, errMalformed
	}
	if len(jws.Signatures) != 1 {
		return Claims{}, errMalformed
	}
	h := jws.Signatures[0].Header
	// No JWS extension is understood here: "crit" (RFC 7515 4.1.11) and the
	// unencoded-payload option "b64" (RFC 7797) are refused outright.
	if _, ok := h.ExtraHeaders["crit"]; ok {
		return Claims{}, errCritical
	}
	if _, ok := h.ExtraHeaders["b64"]; ok {
		return Claims{}, errCritical
	}
	key, err := v.keys.VerificationKey(ctx, h.KeyID, h.Algorithm)
	if err != nil {
		return Claims{}, err
	}
	// Defence in depth against a KeySet that returns the wrong kind of key.
	if !keyFitsAlg(key, h.Algorithm) {
		return Claims{}, errKeyMismatch
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return Claims{}, errSignature
	}
	claims, err := v.checkClaims(payload)
	if err == nil && cacheKey != nil {
		v.remember(cacheKey, claims, h.KeyID, h.Algorithm, key)
	}
	return claims, err
}

// checkCompact refuses, before any parsing, empty and oversized input and
// the forms the library would accept but this package does not, so that each
// token has exactly one accepted spelling: a part count other than three
// (five parts is a JWE), an empty part, line breaks (which the base64
// decoder skips) and non-canonical base64url (non-zero trailing bits).
// Every other character outside the unpadded base64url alphabet is refused
// by the library's decoder.
func checkCompact(raw string, maxBytes int) error {
	if raw == "" {
		return errEmpty
	}
	if len(raw) > maxBytes {
		return errTooLarge
	}
	switch strings.Count(raw, ".") {
	case 2:
	case 4:
		return errEncrypted
	default:
		return errMalformed
	}
	if strings.ContainsAny(raw, "\r\n") {
		return errMalformed
	}
	for seg := range strings.SplitSeq(raw, ".") {
		if !canonicalB64(seg) {
			return errMalformed
		}
	}
	return nil
}

const b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// canonicalB64 reports whether seg is non-empty, of a length that unpadded
// base64 can have, and without bits set past its last whole byte. It leaves
// the other characters to the decoder.
func canonicalB64(seg string) bool {
	if seg == "" {
		return false
	}
	last := strings.IndexByte(b64Alphabet, seg[len(seg)-1])
	switch len(seg) % 4 {
	case 1:
		return false
	case 2:
		return last&0x0f == 0
	case 3:
		return last&0x03 == 0
	}
	return true
}

// keyFitsAlg reports whether key is a public key of the type, curve and
// strength that alg requires.
func keyFitsAlg(key crypto.PublicKey, alg string) bool {
	switch jose.SignatureAlgorithm(alg) {
	case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
		k, ok := key.(*rsa.PublicKey)
		return ok && k != nil && k.N != nil && k.N.BitLen() >= minRSABits
	case jose.ES256:
		return ecCurve(key) == elliptic.P256()
	case jose.ES384:
		return ecCurve(key) == elliptic.P384()
	case jose.ES512:
		return ecCurve(key) == elliptic.P521()
	case jose.EdDSA:
		k, ok := key.(ed25519.PublicKey)
		return ok && len(k) == ed25519.PublicKeySize
	}
	return false
}

func ecCurve(key crypto.PublicKey) elliptic.Curve {
	k, ok := key.(*ecdsa.PublicKey)
	if !ok || k == nil {
		return nil
	}
	return k.Curve
}
