// Package idtoken verifies OpenID Connect ID tokens that an upstream provider
// returns from a refresh, against that provider's issuer keys.
//
// A Verifier holds one configuration per provider name. The issuer's keys are
// found by OIDC discovery (package discovery: Issuer +
// "/.well-known/openid-configuration", fetched once and cached, shared with
// the OAuth client through WithDiscovery), or read straight from
// Provider.JWKSURL when it is set.
//
// Errors fall in two classes that callers must tell apart with errors.Is:
// ErrInvalid means the token itself was refused (a permanent failure), and
// upstreamtoken.ErrUpstreamUnavailable means the issuer's discovery document
// or key set could not be obtained, so the token may well be fine and the
// caller should retry later. No error ever carries the raw token.
package idtoken

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/extauthz/extauthz/discovery"
	"github.com/extauthz/extauthz/internal/setting"
	"github.com/extauthz/extauthz/upstreamtoken"
)

// ErrInvalid wraps every rejection of an ID token (bad signature, wrong
// issuer, audience, expired, no sub): a permanent failure.
var ErrInvalid = errors.New("idtoken: invalid ID token")

const (
	// leeway is how long after its exp a token is still accepted, to absorb
	// clock skew between this service and the provider.
	leeway = time.Minute
	// defaultHTTPTimeout bounds every discovery and key-set request when the
	// HTTP client has no time-out of its own.
	defaultHTTPTimeout = 10 * time.Second
	// maxDetail bounds how much of an upstream error message (which may quote
	// a response body) is copied into our error text.
	maxDetail = 256
)

// signingAlgs is the allow-list of signature algorithms: asymmetric only,
// so that neither HS* (a shared secret the provider's clients also know) nor
// "none" is ever accepted.
var signingAlgs = []string{
	oidc.RS256, oidc.RS384, oidc.RS512,
	oidc.PS256, oidc.PS384, oidc.PS512,
	oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.EdDSA,
}

// Provider is the ID-token configuration of one upstream provider.
type Provider struct {
	// Issuer is the provider's OIDC issuer URL; it must equal the tokens'
	// iss claim exactly. An empty Issuer means ID tokens from this provider
	// are not verified (Has reports false).
	Issuer string
	// ClientID is our client ID at the provider; the tokens' aud must
	// contain it.
	ClientID string
	// JWKSURL, when set, is the issuer's key-set URL and discovery is
	// skipped.
	JWKSURL string
	// HTTPClient, when set, fetches this provider's key set (and, without
	// WithDiscovery, its discovery document) instead of the Verifier's
	// client: its transport carries the provider's trusted roots (ca_file).
	// It gets the Verifier's default time-out when it has none.
	HTTPClient *http.Client
}

// Validate reports every problem of p, joined, each a *setting.Error named
// by the configuration key of its field. A provider with an Issuer needs it
// and, when set, JWKSURL to be absolute http or https URLs and a ClientID
// (client_id: the tokens' audience); one without an Issuer must not set
// JWKSURL.
func (p Provider) Validate() error {
	if p.Issuer == "" {
		if p.JWKSURL != "" {
			return setting.Errorf("jwks_url", " is set but issuer is not")
		}
		return nil
	}
	var errs []error
	if !isHTTPURL(p.Issuer) {
		errs = append(errs, setting.Errorf("issuer", " must be an absolute http(s) URL"))
	}
	if p.ClientID == "" {
		errs = append(errs, setting.Errorf("client_id", " is required"))
	}
	if p.JWKSURL != "" && !isHTTPURL(p.JWKSURL) {
		errs = append(errs, setting.Errorf("jwks_url", " must be an absolute http(s) URL"))
	}
	return errors.Join(errs...)
}

// Option configures a Verifier.
type Option func(*options)

type options struct {
	client        *http.Client
	now           func() time.Time
	retryInterval time.Duration
	discovery     Discovery
}

// Discovery finds a provider's discovery document; *discovery.Cache is one.
type Discovery interface {
	Lookup(ctx context.Context, provider string) (discovery.Metadata, error)
}

// WithDiscovery makes the Verifier take the providers' jwks_uri from d,
// keyed by the same provider names, so that a document fetched for the
// OAuth client is not fetched again. Without it the Verifier keeps a
// discovery.Cache of its own, on its HTTP clients and clock.
func WithDiscovery(d Discovery) Option {
	return func(o *options) { o.discovery = d }
}

// WithHTTPClient sets the HTTP client used for discovery and key-set
// requests. A client without a Timeout is used with a 10 s time-out (on a
// copy), because key-set fetches are shared by all callers and run on no
// caller's context: only the client's time-out can end a hung fetch.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) { o.client = c }
}

// WithNow sets the clock used to check the tokens' exp and nbf and to space
// discovery retries. The default is time.Now.
func WithNow(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// withRetryInterval sets the least time between discovery attempts after a
// failure (tests).
func withRetryInterval(d time.Duration) Option {
	return func(o *options) { o.retryInterval = d }
}

// Verifier verifies ID tokens for a fixed set of providers. It is safe for
// concurrent use.
type Verifier struct {
	opts      options
	providers map[string]*provider
}

// provider is the state of one configured provider. Once verifier is set it
// never changes.
type provider struct {
	name   string
	cfg    Provider
	client *http.Client // fetches the key set

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
}

// New validates every provider (see Provider.Validate) and returns a
// Verifier for those that have an Issuer; providers is keyed by provider
// name. A provider without Issuer is not verified. Every problem is
// reported, in one error. New does no network I/O.
func New(providers map[string]Provider, opts ...Option) (*Verifier, error) {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if o.now == nil {
		o.now = time.Now
	}
	o.client = withTimeout(o.client)

	names := make([]string, 0, len(providers))
	for name := range providers {
		names = append(names, name)
	}
	sort.Strings(names)

	v := &Verifier{opts: o, providers: make(map[string]*provider)}
	sources := map[string]discovery.Source{}
	var errs []error
	for _, name := range names {
		cfg := providers[name]
		if err := cfg.Validate(); err != nil {
			errs = append(errs, setting.Prefixed(fmt.Sprintf("idtoken: provider %q: ", name), err))
			continue
		}
		if cfg.Issuer == "" {
			continue
		}
		p := &provider{name: name, cfg: cfg, client: o.client}
		if cfg.HTTPClient != nil {
			p.client = withTimeout(cfg.HTTPClient)
		}
		if cfg.JWKSURL != "" {
			p.verifier = v.newOIDCVerifier(p, cfg.JWKSURL)
		} else {
			sources[name] = discovery.Source{Issuer: cfg.Issuer, HTTPClient: p.client}
		}
		v.providers[name] = p
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if v.opts.discovery == nil {
		v.opts.discovery = discovery.New(sources, discovery.Options{Now: o.now, RetryInterval: o.retryInterval})
	}
	return v, nil
}

// withTimeout returns c, or a new client when c is nil, with the default
// time-out when it has none (on a copy).
func withTimeout(c *http.Client) *http.Client {
	switch {
	case c == nil:
		return &http.Client{Timeout: defaultHTTPTimeout}
	case c.Timeout <= 0:
		cp := *c
		cp.Timeout = defaultHTTPTimeout
		return &cp
	}
	return c
}

// Has reports whether provider has ID-token verification configured.
func (v *Verifier) Has(provider string) bool {
	_, ok := v.providers[provider]
	return ok
}

// Verify checks raw against the provider's issuer keys and returns the
// token's sub. It requires a signature by one of the issuer's keys with an
// asymmetric algorithm, iss equal to the configured Issuer, aud containing
// the ClientID, an exp not more than one minute past, an nbf not in the
// future, and a non-empty sub.
//
// The issuer's keys come from discovery, done on the first call for the
// provider (or earlier, by the shared discovery.Cache) and cached; if it
// fails, later calls try again, at most once per 5 s, and in between fail at
// once. Concurrent callers share one discovery and one key-set fetch, which
// run on no caller's context: a caller whose ctx ends stops waiting, and the
// work goes on for the others.
//
// A rejection of the token wraps ErrInvalid. Discovery or key set
// unreachable (or answering badly, or a caller's ctx ending while it waits
// for them) wraps upstreamtoken.ErrUpstreamUnavailable: the token may be
// fine, retry later. Verify for a provider that Has reports false for
// returns an error wrapping neither.
func (v *Verifier) Verify(ctx context.Context, provider, raw string) (subject string, err error) {
	p, ok := v.providers[provider]
	if !ok {
		return "", fmt.Errorf("idtoken: provider %q has no ID-token verification configured", provider)
	}
	verifier, err := v.verifierFor(ctx, p)
	if err != nil {
		return "", err
	}

	// go-oidc formats the key set's error with %v, which loses it; the key
	// set records it here instead.
	var fetch fetchFailure
	tok, err := verifier.Verify(context.WithValue(ctx, fetchFailureKey{}, &fetch), raw)
	if err != nil {
		if fetch.err != nil {
			return "", unavailable(p.name, "fetching the issuer's keys", fetch.err)
		}
		return "", invalid(p.name, reason(err, raw))
	}
	if tok.Subject == "" {
		return "", invalid(p.name, "token has no sub")
	}
	return tok.Subject, nil
}

// verifierFor returns p's go-oidc verifier, building it from the discovery
// document's jwks_uri if there is none yet. No lock is held across network
// I/O.
func (v *Verifier) verifierFor(ctx context.Context, p *provider) (*oidc.IDTokenVerifier, error) {
	p.mu.Lock()
	ver := p.verifier
	p.mu.Unlock()
	if ver != nil {
		return ver, nil
	}
	meta, err := v.opts.discovery.Lookup(ctx, p.name)
	if err != nil {
		return nil, unavailable(p.name, "OIDC discovery", err)
	}
	if meta.JWKSURI == "" {
		return nil, unavailable(p.name, "OIDC discovery", errors.New("discovery document has no jwks_uri"))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.verifier == nil {
		p.verifier = v.newOIDCVerifier(p, meta.JWKSURI)
	}
	return p.verifier, nil
}

func (v *Verifier) newOIDCVerifier(p *provider, jwksURL string) *oidc.IDTokenVerifier {
	cfg := p.cfg
	keys := oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), p.client), jwksURL)
	now := v.opts.now
	return oidc.NewVerifier(cfg.Issuer, &recordingKeySet{keys: keys}, &oidc.Config{
		ClientID:             cfg.ClientID,
		SupportedSigningAlgs: signingAlgs,
		// Shifting the clock back gives exp its leeway (and makes go-oidc's
		// own 5 min nbf leeway 4 min).
		Now: func() time.Time { return now().Add(-leeway) },
	})
}

// fetchFailureKey is the context key under which Verify passes a
// *fetchFailure to recordingKeySet.
type fetchFailureKey struct{}

// fetchFailure receives the error of a failed key-set fetch during one
// Verify call. Only the goroutine of that call touches it.
type fetchFailure struct{ err error }

// recordingKeySet wraps go-oidc's RemoteKeySet to tell a failed key fetch
// from a bad signature. go-oidc v3 returns a fetch failure as
// fmt.Errorf("fetching keys %w", err), the only error from
// RemoteKeySet.VerifySignature that wraps another (a signature that no key
// verifies is errors.New); the tests pin this down.
type recordingKeySet struct {
	keys oidc.KeySet
}

func (k *recordingKeySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, err := k.keys.VerifySignature(ctx, jwt)
	if err != nil && errors.Unwrap(err) != nil {
		if f, ok := ctx.Value(fetchFailureKey{}).(*fetchFailure); ok {
			f.err = err
		}
	}
	return payload, err
}

// reason turns a go-oidc verification error into a short description that
// never contains the raw token. Only go-oidc's issuer and audience messages
// are passed on (they quote the claim, which helps find a misconfiguration);
// every other message is replaced.
func reason(err error, raw string) string {
	var expired *oidc.TokenExpiredError
	msg := err.Error()
	switch {
	case errors.As(err, &expired) && expired.Expiry.IsZero():
		return "token has no exp"
	case errors.As(err, &expired):
		return "token expired at " + expired.Expiry.UTC().Format(time.RFC3339)
	case strings.HasPrefix(msg, "oidc: id token issued by a different provider"),
		strings.HasPrefix(msg, "oidc: expected audience"):
		if strings.Contains(msg, raw) {
			return "wrong issuer or audience"
		}
		return truncate(strings.TrimPrefix(msg, "oidc: "))
	case strings.HasPrefix(msg, "oidc: malformed jwt"):
		if alg, ok := headerAlg(raw); ok && !allowedAlg(alg) {
			return fmt.Sprintf("signing algorithm %.16q is not allowed", alg)
		}
		return "malformed JWT"
	case strings.HasPrefix(msg, "failed to verify signature"):
		return "signature not verified by any of the issuer's keys"
	case strings.HasPrefix(msg, "oidc: current time") && strings.Contains(msg, "nbf"):
		return "token not yet valid (nbf)"
	case strings.HasPrefix(msg, "oidc: failed to unmarshal claims"):
		return "claims are not a valid ID token payload"
	case strings.HasPrefix(msg, "oidc: id token not signed"),
		strings.HasPrefix(msg, "oidc: multiple signatures"):
		return "token must carry exactly one signature"
	default:
		return "token refused"
	}
}

// headerAlg reads the alg of a compact JWS header, for the error message.
func headerAlg(raw string) (string, bool) {
	seg, _, ok := strings.Cut(raw, ".")
	if !ok || len(seg) > 4096 {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return "", false
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(b, &h) != nil {
		return "", false
	}
	return h.Alg, true
}

func allowedAlg(alg string) bool {
	for _, a := range signingAlgs {
		if a == alg {
			return true
		}
	}
	return false
}

func invalid(provider, reason string) error {
	return fmt.Errorf("%w (provider %q): %s", ErrInvalid, provider, reason)
}

// unavailableError wraps upstreamtoken.ErrUpstreamUnavailable and its cause,
// with the cause's text truncated (it may quote a whole response body).
type unavailableError struct {
	msg   string
	cause error
}

func (e *unavailableError) Error() string { return e.msg }

func (e *unavailableError) Unwrap() []error {
	return []error{upstreamtoken.ErrUpstreamUnavailable, e.cause}
}

func unavailable(provider, what string, cause error) error {
	return &unavailableError{
		msg:   fmt.Sprintf("%v: idtoken: provider %q: %s: %s", upstreamtoken.ErrUpstreamUnavailable, provider, what, truncate(cause.Error())),
		cause: cause,
	}
}

func truncate(s string) string {
	if len(s) <= maxDetail {
		return s
	}
	// Cut on a rune boundary.
	i := maxDetail
	for i > 0 && s[i]&0xC0 == 0x80 {
		i--
	}
	return s[:i] + "…"
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
