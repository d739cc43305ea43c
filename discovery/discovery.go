// Package discovery fetches and caches the OpenID Provider metadata of
// upstream identity providers (OpenID Connect Discovery 1.0, section 4:
// ISSUER + "/.well-known/openid-configuration").
//
// One Cache serves every consumer of a provider's metadata, so that the
// document is fetched once per provider: the OAuth client takes the
// provider's authorization, token and revocation endpoints from it, the
// ID-token verifier its jwks_uri. Entries are keyed by provider name (two
// providers may share an issuer but not their TLS settings).
//
// A document is fetched on the first Lookup of its provider, or ahead of
// time by Prefetch, and then kept for the life of the Cache. A failed fetch
// is tried again on a later Lookup, at most once per retry interval (5 s by
// default); in between, Lookup fails at once with the same cause. Concurrent
// callers share one fetch, which runs on no caller's context: a caller whose
// context ends stops waiting and the fetch goes on for the others, bounded
// by the HTTP client's time-out.
//
// A document is accepted when it is a JSON object whose issuer equals the
// configured issuer exactly (section 4.3) and whose endpoints, when present,
// are absolute http(s) URLs without credentials that do not use plain http
// to a host other than a loopback address (unless Options.AllowInsecureHTTP).
// Errors never quote the document, nor a URL it names.
package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/extauthz/extauthz/internal/setting"
)

const (
	// WellKnownPath is appended to the issuer (without its trailing slash)
	// to find the discovery document.
	WellKnownPath = "/.well-known/openid-configuration"
	// DefaultRetryInterval is the least time between two fetches of one
	// provider's document after one failed.
	DefaultRetryInterval = 5 * time.Second
	// DefaultHTTPTimeout bounds each fetch when the provider's HTTP client
	// has no time-out of its own.
	DefaultHTTPTimeout = 10 * time.Second
	// maxDocument bounds the size of a discovery document.
	maxDocument = 1 << 20
)

var (
	// ErrUnknownProvider means Lookup was asked for a provider the Cache
	// was not given.
	ErrUnknownProvider = errors.New("discovery: unknown provider")
	// ErrInvalidDocument wraps every refusal of a document that was
	// fetched: not JSON, another issuer, an endpoint that is not an
	// acceptable URL. It points at a configuration problem (ours or the
	// provider's) rather than at an outage, though it is retried as one.
	ErrInvalidDocument = errors.New("discovery: invalid discovery document")
)

// Metadata is what extauthz reads of a provider's discovery document. An
// endpoint the document does not name is empty.
type Metadata struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	// RevocationEndpoint is the RFC 7009 endpoint (registered by RFC 8414;
	// many OpenID Providers publish it in their discovery document too).
	RevocationEndpoint string `json:"revocation_endpoint"`
	JWKSURI            string `json:"jwks_uri"`
	// TokenEndpointAuthMethods is token_endpoint_auth_methods_supported;
	// the specification's default when absent is client_secret_basic.
	TokenEndpointAuthMethods []string `json:"token_endpoint_auth_methods_supported"`
}

// Source is where one provider's document comes from.
type Source struct {
	// Issuer is the provider's issuer URL, absolute http(s).
	Issuer string
	// HTTPClient fetches the document (its transport carries the
	// provider's trusted roots). Nil: a client on http.DefaultTransport.
	// A client without a Timeout is used with DefaultHTTPTimeout.
	HTTPClient *http.Client
}

// Options tune a Cache. The zero value is ready to use.
type Options struct {
	// AllowInsecureHTTP accepts endpoints with plain http to any host.
	AllowInsecureHTTP bool
	// RetryInterval is the least time between two fetches after a
	// failure; zero means DefaultRetryInterval.
	RetryInterval time.Duration
	// Now is the clock of the retry interval; nil means time.Now.
	Now func() time.Time
}

// Cache holds the discovery documents of a fixed set of providers. It is
// safe for concurrent use.
type Cache struct {
	opts    Options
	entries map[string]*entry
}

// entry is one provider's document, or the state of fetching it.
type entry struct {
	name   string
	src    Source
	client *http.Client

	mu      sync.Mutex
	meta    *Metadata // once set, never changes
	pending *fetch    // the fetch in flight, if any
	failErr error     // the cause of the last failed fetch
	failAt  time.Time // when it failed
}

// fetch is one attempt that several callers may wait for; its result is
// written before done is closed.
type fetch struct {
	done chan struct{}
	meta *Metadata
	err  error
}

// New returns a Cache for sources, keyed by provider name. It does no
// network I/O. The sources' issuers are not checked here: the packages that
// own the settings validate them.
func New(sources map[string]Source, opts Options) *Cache {
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = DefaultRetryInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Cache{opts: opts, entries: make(map[string]*entry, len(sources))}
	for name, src := range sources {
		client := src.HTTPClient
		switch {
		case client == nil:
			client = &http.Client{Timeout: DefaultHTTPTimeout}
		case client.Timeout <= 0:
			cp := *client
			cp.Timeout = DefaultHTTPTimeout
			client = &cp
		}
		c.entries[name] = &entry{name: name, src: src, client: client}
	}
	return c
}

// Has reports whether the Cache has a source for provider.
func (c *Cache) Has(provider string) bool {
	_, ok := c.entries[provider]
	return ok
}

// Len returns the number of providers the Cache has a source for.
func (c *Cache) Len() int { return len(c.entries) }

// Lookup returns provider's metadata, fetching the document if it has not
// been fetched yet (see the package documentation for caching, retries and
// shared fetches). Its errors: ErrUnknownProvider; ErrInvalidDocument for a
// document that was refused; the context's error when ctx ends first; else
// the cause of a failed fetch (network, time-out, an HTTP status other than
// 200). The error text names the provider and never a URL.
func (c *Cache) Lookup(ctx context.Context, provider string) (Metadata, error) {
	e, ok := c.entries[provider]
	if !ok {
		return Metadata{}, fmt.Errorf("%w %q", ErrUnknownProvider, provider)
	}
	e.mu.Lock()
	if e.meta != nil {
		m := *e.meta
		e.mu.Unlock()
		return m, nil
	}
	f := e.pending
	if f == nil {
		if e.failErr != nil && c.opts.Now().Sub(e.failAt) < c.opts.RetryInterval {
			err := e.failErr
			e.mu.Unlock()
			return Metadata{}, fmt.Errorf("discovery: provider %q: failed recently: %w", provider, err)
		}
		f = &fetch{done: make(chan struct{})}
		e.pending = f
		go c.run(e, f)
	}
	e.mu.Unlock()

	select {
	case <-ctx.Done():
		return Metadata{}, fmt.Errorf("discovery: provider %q: waiting for the discovery document: %w", provider, ctx.Err())
	case <-f.done:
	}
	if f.err != nil {
		return Metadata{}, fmt.Errorf("discovery: provider %q: %w", provider, f.err)
	}
	return *f.meta, nil
}

// Prefetch looks up every provider's document concurrently, each bounded by
// ctx, and returns the failures by provider name (nil when all succeeded).
// A failure is not final: a later Lookup tries again.
func (c *Cache) Prefetch(ctx context.Context) map[string]error {
	var (
		mu   sync.Mutex
		errs map[string]error
		wg   sync.WaitGroup
	)
	for name := range c.entries {
		wg.Go(func() {
			if _, err := c.Lookup(ctx, name); err != nil {
				mu.Lock()
				if errs == nil {
					errs = map[string]error{}
				}
				errs[name] = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errs
}

// run fetches e's document and publishes the outcome to e and to f's
// waiters.
func (c *Cache) run(e *entry, f *fetch) {
	meta, err := c.get(e)

	e.mu.Lock()
	defer e.mu.Unlock()
	if err == nil {
		e.meta = meta
		e.failErr = nil
	} else {
		e.failErr = err
		e.failAt = c.opts.Now()
	}
	e.pending = nil
	f.meta, f.err = meta, err
	close(f.done)
}

// get fetches and checks e's document, on a context of its own bounded by
// the client's time-out.
func (c *Cache) get(e *entry) (*Metadata, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet,
		strings.TrimSuffix(e.src.Issuer, "/")+WellKnownPath, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: the issuer is not a URL", ErrInvalidDocument)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, withoutURL(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDocument))
		return nil, fmt.Errorf("discovery document answered HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	if err != nil {
		return nil, withoutURL(err)
	}
	if len(body) > maxDocument {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalidDocument, maxDocument)
	}
	var m Metadata
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object of the expected shape", ErrInvalidDocument)
	}
	if err := c.check(e.src.Issuer, m); err != nil {
		return nil, err
	}
	return &m, nil
}

// check applies the rules of the package documentation to m.
func (c *Cache) check(issuer string, m Metadata) error {
	if m.Issuer != issuer {
		return fmt.Errorf("%w: its issuer is not the configured issuer", ErrInvalidDocument)
	}
	var bad []string
	for _, ep := range []struct{ name, url string }{
		{"authorization_endpoint", m.AuthorizationEndpoint},
		{"token_endpoint", m.TokenEndpoint},
		{"revocation_endpoint", m.RevocationEndpoint},
		{"jwks_uri", m.JWKSURI},
	} {
		if ep.url == "" {
			continue
		}
		u, err := url.Parse(ep.url)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil:
			bad = append(bad, ep.name+" is not an absolute http(s) URL without credentials")
		case !c.opts.AllowInsecureHTTP && setting.CleartextToRemote(ep.url):
			bad = append(bad, ep.name+" uses plain http to a host that is not a loopback address")
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidDocument, strings.Join(bad, "; "))
	}
	return nil
}

// withoutURL returns err without the *url.Error layer that quotes the
// request URL, keeping what it wraps (a time-out, a refused connection) for
// errors.Is and errors.As.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("fetching the discovery document: %w", ue.Err)
	}
	return err
}
