// Package config loads and validates the extauthz configuration file.
//
// The file is YAML. Every scalar value may reference environment variables as
// ${NAME}; a reference to an unset variable is an error. Unknown keys are
// errors. Load reports every problem in the file at once.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.yaml.in/yaml/v3"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/idtoken"
	"github.com/extauthz/extauthz/internal/gc"
	"github.com/extauthz/extauthz/internal/setting"
	"github.com/extauthz/extauthz/internal/tlsreload"
	"github.com/extauthz/extauthz/jwtauth"
	"github.com/extauthz/extauthz/oauthclient"
	"github.com/extauthz/extauthz/tokencrypt"
	"github.com/extauthz/extauthz/upstreamtoken"
)

// Config is the whole configuration. Field names follow the YAML keys.
type Config struct {
	Listen           Listen              `yaml:"listen"`
	Database         Database            `yaml:"database"`
	JWT              JWT                 `yaml:"jwt"`
	Providers        map[string]Provider `yaml:"providers"`
	DefaultProviders []string            `yaml:"default_providers"`
	Routes           []Route             `yaml:"routes"`
	// DefaultRoute is the policy of a request that no route matches.
	DefaultRoute DefaultRoute `yaml:"default_route"`
	// RoutesOnly ignores the context extensions of a Check: providers and
	// required scopes come only from routes, default_route and
	// default_providers. For Istio, which cannot send context extensions
	// and where any workload that can reach the port could send its own.
	RoutesOnly bool `yaml:"routes_only"`
	// AllowInsecureHTTP accepts http:// for jwt.jwks_url and the
	// providers' token_url, revocation_url and issuer on any host. Without it they must be
	// https unless the host is a loopback address or localhost. For
	// demonstrations on a private network only.
	AllowInsecureHTTP bool       `yaml:"allow_insecure_http"`
	Refresh           Refresh    `yaml:"refresh"`
	Deny              Deny       `yaml:"deny"`
	Log               Log        `yaml:"log"`
	Encryption        Encryption `yaml:"encryption"`
	GC                GC         `yaml:"gc"`
	Shutdown          Shutdown   `yaml:"shutdown"`
	Cache             Cache      `yaml:"cache"`
	// HTTP configures the HTTP authorization listener (listen.http).
	HTTP HTTP `yaml:"http"`
	// Admin configures the session API (listen.admin).
	Admin Admin `yaml:"admin"`
	// Connect configures connect links (listen.connect).
	Connect Connect `yaml:"connect"`

	keyring *tokencrypt.Keyring
}

// Encryption configures encryption of tokens at rest.
type Encryption struct {
	// Primary names the key that encrypts; the others only decrypt (during
	// a rotation). May be omitted when there is one key.
	Primary string          `yaml:"primary"`
	Keys    []EncryptionKey `yaml:"keys"`
	// AcceptV1 makes the service read ciphertexts of the earlier format
	// (v1), which do not seal the row's binding. Default true, so that an
	// upgrade breaks nothing; set it false once 'extauthz keys rotate' has
	// sealed every row again. 'keys rotate' itself always reads v1.
	AcceptV1 *bool `yaml:"accept_v1"`
}

// AcceptsV1 reports the effective value of encryption.accept_v1.
func (e Encryption) AcceptsV1() bool { return e.AcceptV1 == nil || *e.AcceptV1 }

// EncryptionKey is one named AES-256 key: 32 random bytes as base64 or hex,
// given inline (normally as ${VAR}) or in a file.
type EncryptionKey struct {
	ID      string `yaml:"id"`
	Key     string `yaml:"key"`
	KeyFile string `yaml:"key_file"`
}

// Keyring returns the encryption keys, parsed and checked at load.
func (c *Config) Keyring() *tokencrypt.Keyring { return c.keyring }

// Listen configures the listeners.
type Listen struct {
	// GRPC is the address of the ext_authz gRPC listener. Default ":9001".
	GRPC string `yaml:"grpc"`
	// Reflection enables gRPC server reflection (handy with grpcurl).
	Reflection bool `yaml:"reflection"`
	// TLS, when its Cert is set, makes the gRPC listener serve TLS;
	// otherwise it is plaintext (for a sidecar on localhost).
	TLS TLS `yaml:"tls"`
	// Metrics is the address of the plaintext HTTP listener serving
	// /metrics, /healthz and /readyz. Default ":9090"; "off" disables it.
	Metrics string `yaml:"metrics"`
	// HTTP is the address of the HTTP authorization listener (forward auth
	// for nginx, Caddy and Traefik; Envoy's http_service): host:port, :port
	// or "unix:" and an absolute path for a Unix socket. Empty (the
	// default) disables it. It answers proxies only: it must not be
	// reachable by clients.
	HTTP string `yaml:"http"`
	// Admin is the address (host:port) of the session API (package
	// adminapi), configured by the admin section. Empty (the default)
	// disables it.
	Admin string `yaml:"admin"`
	// Connect is the address (host:port) of the connect endpoints, where a
	// user's browser links an upstream account to a session; it requires
	// connect.public_url and connect.login. Empty (the default) disables
	// connect: no deny carries a connect link.
	Connect string `yaml:"connect"`
}

// Connect configures connect links and tickets.
type Connect struct {
	// PublicURL is where browsers reach listen.connect, behind the API's
	// public host (https://api.example.com/.extauthz): links are
	// {public_url}/connect?ticket=.... Required with listen.connect. https,
	// or http on a loopback host (or anywhere with allow_insecure_http);
	// no query or fragment.
	PublicURL string `yaml:"public_url"`
	// TicketTTL is how long a connect link's ticket is valid. Default 10m;
	// between 1m and 24h.
	TicketTTL Duration `yaml:"ticket_ttl"`
	// Login is the client with which the browser signs in at the primary
	// authorization server before it is sent to a provider. Required with
	// listen.connect.
	Login ConnectLogin `yaml:"login"`
	// ReturnURL, when set, is linked from the success page ("Go back"): an
	// absolute http(s) URL.
	ReturnURL string `yaml:"return_url"`
	// TLS, when its Cert is set, makes listen.connect serve TLS; otherwise
	// it is plaintext, for the public host's proxy in front of it.
	TLS TLS `yaml:"tls"`
}

// ConnectLogin is the login client at the primary authorization server
// (OpenID Connect, authorization code with PKCE). Its redirect URI is
// {connect.public_url}/connect/login.
type ConnectLogin struct {
	// Issuer is the server's issuer URL (discovery); default jwt.issuer.
	Issuer string `yaml:"issuer"`
	// ClientID and ClientSecret are the client's credentials; both
	// required (write the secret as ${VAR}).
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret"`
	// TokenEndpointAuth is client_secret_basic (the default) or
	// client_secret_post.
	TokenEndpointAuth string `yaml:"token_endpoint_auth"`
	// Scopes are requested at sign-in; default [openid] (openid is always
	// requested).
	Scopes []string `yaml:"scopes"`
}

// UnixPrefix starts a listen.http value naming a Unix socket.
const UnixPrefix = "unix:"

// HTTPAddr returns the network ("tcp" or "unix") and address of listen.http.
func (l Listen) HTTPAddr() (network, address string) {
	if path, ok := strings.CutPrefix(l.HTTP, UnixPrefix); ok {
		return "unix", path
	}
	return "tcp", l.HTTP
}

// HTTP configures the HTTP authorization listener.
type HTTP struct {
	// TLS, when its Cert is set, makes listen.http serve TLS (mTLS with
	// client_ca, restricted to client_identities when set); otherwise it is
	// plaintext, for a proxy on the same host or a Unix socket.
	TLS TLS `yaml:"tls"`
}

// validateHTTP checks listen.http and the http section.
func (c *Config) validateHTTP() []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	network, addr := c.Listen.HTTPAddr()
	switch {
	case c.Listen.HTTP == "":
		if t := c.HTTP.TLS; t.Cert != "" || t.Key != "" || t.ClientCA != "" || len(t.ClientIdentities) > 0 {
			add("http.tls is set but listen.http is not: set listen.http to serve HTTP authorization")
		}
		return p
	case network == "unix":
		if !strings.HasPrefix(addr, "/") {
			add("listen.http: a Unix socket is \"unix:\" and an absolute path")
		}
	default:
		if _, _, err := net.SplitHostPort(addr); err != nil {
			add("listen.http must be host:port, :port or unix:/absolute/path")
		} else if sharesListener(addr, c.Listen.GRPC, c.Listen.Metrics) {
			add("listen.http must differ from listen.grpc and listen.metrics")
		}
	}
	return append(p, c.HTTP.TLS.validate("http.tls")...)
}

// MetricsOff is the listen.metrics value that disables the metrics listener.
const MetricsOff = "off"

// Shutdown configures the graceful shutdown on SIGTERM.
type Shutdown struct {
	// DrainDelay is how long the server keeps serving after it has turned
	// its health NOT_SERVING and its readiness 503, so that Envoy's health
	// checks and Kubernetes endpoints move traffic away. Default 5s.
	DrainDelay Duration `yaml:"drain_delay"`
	// Timeout bounds the wait for in-flight Checks (and their refreshes) to
	// finish once the listener stops accepting. Default 15s.
	Timeout Duration `yaml:"timeout"`
}

// TLS configures TLS on the gRPC listener. The files are PEM and are read
// again when they change, without a restart.
type TLS struct {
	// Cert is the server certificate chain. Cert and Key are set together.
	Cert string `yaml:"cert"`
	// Key is the certificate's private key.
	Key string `yaml:"key"`
	// ClientCA, when set, makes the listener require a client certificate
	// issued by one of these CAs (mTLS). It requires Cert and Key.
	ClientCA string `yaml:"client_ca"`
	// ClientIdentities, when set, restricts the callers further: the
	// client certificate must carry one of these subject alternative names
	// exactly, a DNS name or a URI such as a SPIFFE ID
	// (spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account).
	// Other callers are refused at the TLS handshake. It requires ClientCA.
	ClientIdentities []string `yaml:"client_identities"`
}

// validate checks one listener's TLS settings; at is the key of the tls
// section ("listen.tls").
func (t TLS) validate(at string) []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	switch {
	case (t.Cert == "") != (t.Key == ""):
		add("%s.cert and %s.key must be set together", at, at)
	case t.ClientCA != "" && t.Cert == "":
		add("%s.client_ca requires %s.cert and %s.key", at, at, at)
	}
	if len(t.ClientIdentities) > 0 && t.ClientCA == "" {
		add("%s.client_identities requires %s.client_ca: without it no client certificate is verified", at, at)
	}
	for i, id := range t.ClientIdentities {
		if err := tlsreload.CheckIdentity(id); err != nil {
			add("%s.client_identities[%d]: %v", at, i, err)
		}
	}
	for _, f := range []struct{ key, path string }{{"cert", t.Cert}, {"key", t.Key}, {"client_ca", t.ClientCA}} {
		if f.path == "" {
			continue
		}
		if err := readable(f.path); err != nil {
			add("%s.%s: %v", at, f.key, err)
		}
	}
	return p
}

// Database configures the token store.
type Database struct {
	// URL is a PostgreSQL connection string as libpq and pgx take it: a
	// postgres:// URL or keyword=value pairs. It may name several servers
	// (postgres://h1:5432,h2:5432/db, or host=h1,h2 port=5432,5432), which
	// are tried in order; with target_session_attrs=read-write, only a
	// primary is kept. The DATABASE_URL environment variable, when set,
	// overrides it.
	URL string `yaml:"url"`
	// DirectURL is the connection the token cache's listener (LISTEN)
	// uses; it must not go through PgBouncer in transaction mode. Default:
	// URL.
	DirectURL string `yaml:"direct_url"`
}

// databaseURLRule completes "database.url " in the message of a connection
// string that does not parse.
const databaseURLRule = "must be a PostgreSQL connection string: a postgres:// URL or keyword=value pairs (host=... dbname=...)"

// validDatabaseURL reports whether dsn parses as pgx parses connection
// strings (so a list of hosts is accepted). The parser's error is not
// reported: it may quote the string, password included.
func validDatabaseURL(dsn string) bool {
	isURL := strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
	// pgx takes anything else as keyword=value pairs, and a pair it does
	// not know as a run-time parameter: require a keyword first, so that a
	// URL of another scheme (mysql://h/db?x=y) is refused.
	if !isURL && !keywordFirst.MatchString(dsn) {
		return false
	}
	_, err := pgconn.ParseConfig(dsn)
	return err == nil
}

var keywordFirst = regexp.MustCompile(`^\s*[A-Za-z_]+\s*=`)

// JWT configures verification of the caller's access token.
type JWT struct {
	Issuer    string   `yaml:"issuer"`
	Audiences []string `yaml:"audiences"`
	JWKSURL   string   `yaml:"jwks_url"`
	JWKSFile  string   `yaml:"jwks_file"`
	// Leeway is the clock skew tolerated on exp, nbf and iat. Default 30s.
	Leeway Duration `yaml:"leeway"`
}

// Provider configures one upstream identity provider. oauthclient.Provider
// states the rules of its OAuth settings.
type Provider struct {
	// TokenURL is the token endpoint; required unless Issuer is set, whose
	// discovery document then names it.
	TokenURL string `yaml:"token_url"`
	// AuthorizationURL is the authorization endpoint (the connect flow);
	// default: the discovery document's.
	AuthorizationURL string `yaml:"authorization_url"`
	ClientID         string `yaml:"client_id"`
	ClientSecret     string `yaml:"client_secret"`
	// TokenEndpointAuth is client_secret_basic, client_secret_post,
	// private_key_jwt or tls_client_auth. It or AuthStyle is required.
	TokenEndpointAuth string `yaml:"token_endpoint_auth"`
	// AuthStyle is the earlier spelling: "header" for client_secret_basic,
	// "params" for client_secret_post. Not together with
	// TokenEndpointAuth.
	AuthStyle string `yaml:"auth_style"`
	// PrivateKeyFile, KeyID and AssertionAudience ("token_endpoint", the
	// default, or "issuer") configure private_key_jwt.
	PrivateKeyFile    string `yaml:"private_key_file"`
	KeyID             string `yaml:"key_id"`
	AssertionAudience string `yaml:"assertion_audience"`
	// ClientCertFile and ClientKeyFile configure tls_client_auth.
	ClientCertFile string `yaml:"client_cert_file"`
	ClientKeyFile  string `yaml:"client_key_file"`
	// CAFile holds CA certificates trusted, beyond the system's, for the
	// provider's issuer and endpoints.
	CAFile string `yaml:"ca_file"`
	// Scopes are sent on refresh when set, and requested when the browser
	// links an account (connect; openid is added for an OIDC provider).
	Scopes []string `yaml:"scopes"`
	// AuthorizationParams are extra parameters of the connect flow's
	// authorization request, such as Google's access_type: offline and
	// prompt: consent. The flow's own parameters (state, scope, ...) may
	// not be set.
	AuthorizationParams map[string]string `yaml:"authorization_params"`
	// Header receives "Bearer <access token>". Default "authorization".
	Header string `yaml:"header"`
	// IDTokenHeader, when set, receives the raw ID token.
	IDTokenHeader string `yaml:"id_token_header"`
	// Issuer is the provider's OIDC issuer: its discovery document fills
	// the endpoints not set by hand and names the keys that verify
	// refreshed ID tokens.
	Issuer string `yaml:"issuer"`
	// RevocationURL is the provider's token revocation endpoint (RFC
	// 7009), where 'tokens delete --revoke' and the admin API revoke a
	// session's grant, authenticated as refreshes are. Empty: the
	// discovery document's, else tokens are not revoked at this provider.
	RevocationURL string `yaml:"revocation_url"`
}

// Route chooses providers and required scopes by request host and path, for
// proxies that cannot send context_extensions (Istio). It applies to a Check
// that carries neither the upstream_providers nor the required_scopes context
// extension, and to every Check with routes_only; authz.Route states the
// matching rules.
type Route struct {
	// Host is a host name or IP address, without port, compared
	// case-insensitively with the request's host (whose port is ignored).
	// Empty matches any host.
	Host string `yaml:"host"`
	// PathPrefix starts with "/"; the longest matching prefix wins.
	PathPrefix string `yaml:"path_prefix"`
	// CaseSensitive compares path_prefix with the path exactly; by default
	// ASCII letters match regardless of case ("/GITHUB/" is under
	// "/github/"), as Envoy's "case_sensitive: false" and many backends do.
	CaseSensitive bool `yaml:"case_sensitive"`
	// Providers are the route's providers; empty means default_providers.
	Providers []string `yaml:"providers"`
	// RequiredScopes must all be in the caller's JWT (scope or scp).
	RequiredScopes []string `yaml:"required_scopes"`
	// DenyStyle "mcp" answers a missing or dead upstream grant with a
	// JSON-RPC error carrying the connect link (authz.DenyStyleMCP); it
	// requires listen.connect. Empty: the plain deny.
	DenyStyle string `yaml:"deny_style"`
}

// DefaultRoute is the policy of a request that no route matches (and, unless
// routes_only is set, that carries no context extension): the weakest policy,
// so it is where scopes required everywhere go.
type DefaultRoute struct {
	// Providers are its providers; empty means default_providers, which
	// also remain the providers of every route that names none.
	Providers []string `yaml:"providers"`
	// RequiredScopes must all be in the caller's JWT.
	RequiredScopes []string `yaml:"required_scopes"`
	// DenyStyle is as for a route.
	DenyStyle string `yaml:"deny_style"`
}

// Refresh configures refreshing expired upstream access tokens.
type Refresh struct {
	// Skew refreshes tokens that expire within this margin. Default 30s.
	Skew Duration `yaml:"skew"`
	// Timeout bounds one call to a provider's token endpoint. Default 10s.
	Timeout Duration `yaml:"timeout"`
	// LockTimeout is how long a refresh lease lasts: after it, another
	// replica may act on a row whose refresh owner died or hung. It must
	// exceed timeout plus the 5s write budget plus 1s. Default 30s.
	LockTimeout Duration `yaml:"lock_timeout"`
	// BackoffMin and BackoffMax bound the per-provider pause after a transient
	// failure. Defaults 1s and 1m.
	BackoffMin Duration `yaml:"backoff_min"`
	BackoffMax Duration `yaml:"backoff_max"`
	// Ahead configures refresh ahead.
	Ahead Ahead `yaml:"ahead"`
}

// PersistTimeout is the budget for storing one refresh's result, retries
// included.
const PersistTimeout = 5 * time.Second

// GC configures garbage collection of expired sessions: the rows whose
// session expiry has passed are deleted by one replica at a time, in
// batches.
type GC struct {
	// Interval is the time between two passes, give or take half of it. 0
	// disables collection (run 'extauthz gc' instead). Default 10m; at
	// least 1s otherwise.
	Interval Duration `yaml:"interval"`
	// Batch is the most rows one DELETE statement removes. Default 1000.
	Batch int `yaml:"batch"`
}

// Deny configures deny responses.
type Deny struct {
	// Realm goes into WWW-Authenticate. Default "extauthz".
	Realm string `yaml:"realm"`
	// ResourceMetadata is the RFC 9728 protected resource metadata URL sent
	// in WWW-Authenticate, when set.
	ResourceMetadata string `yaml:"resource_metadata"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is json or text. Default json.
	Format string `yaml:"format"`
}

// Duration is a time.Duration written as a Go duration string ("30s"). A
// value that does not parse is reported by validation with its line, along
// with every other problem.
type Duration struct {
	v    time.Duration
	set  bool
	bad  string
	line int
}

// UnmarshalYAML records a Go duration string; it never fails, so that decoding
// goes on and every problem is reported at once.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	*d = Duration{v: v, set: true, line: n.Line}
	if err != nil {
		d.bad = n.Value + " "
	}
	return nil
}

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return d.v }

// Dur returns a set Duration of v.
func Dur(v time.Duration) Duration { return Duration{v: v, set: true} }

func (d *Duration) orDefault(v time.Duration) {
	if !d.set {
		*d = Dur(v)
	}
}

// ErrInvalid wraps every configuration problem.
var ErrInvalid = errors.New("invalid configuration")

// Load reads the file at path, expands ${VAR} from the environment, applies
// DATABASE_URL and defaults, and validates the result. The error wraps
// ErrInvalid and lists every problem found.
func Load(path string, getenv func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return Parse(data, getenv)
}

// Parse is Load for a file already read.
func Parse(data []byte, getenv func(string) string) (*Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil && err != io.EOF {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var problems []string
	expand(&root, getenv, &problems)

	var c Config
	if root.Kind != 0 {
		unknownKeys(&root, reflect.TypeOf(c), "", &problems)
		if err := root.Decode(&c); err != nil {
			problems = append(problems, yamlProblems(err)...)
		}
	}
	if v := getenv("DATABASE_URL"); v != "" {
		c.Database.URL = v
	}
	c.defaults()
	problems = append(problems, c.validate()...)
	// A rule two owners share (the client_id of an OIDC provider, which
	// both the OAuth client and the ID-token verifier need) is listed once.
	seen := map[string]bool{}
	problems = slices.DeleteFunc(problems, func(p string) bool {
		dup := seen[p]
		seen[p] = true
		return dup
	})
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w:\n  - %s", ErrInvalid, strings.Join(problems, "\n  - "))
	}
	return &c, nil
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expand replaces ${VAR} in every scalar value (not in keys). Expanding after
// parsing means a variable's value can never change the file's structure.
func expand(n *yaml.Node, getenv func(string) string, problems *[]string) {
	switch n.Kind {
	case yaml.ScalarNode:
		n.Value = varRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
			name := ref[2 : len(ref)-1]
			v := getenv(name)
			if v == "" {
				*problems = append(*problems, fmt.Sprintf("line %d: environment variable %s is not set", n.Line, name))
			}
			return v
		})
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			expand(n.Content[i], getenv, problems)
		}
	default:
		for _, c := range n.Content {
			expand(c, getenv, problems)
		}
	}
}

// unknownKeys reports mapping keys that t has no field for, with their line
// and path, so that a misspelt key is an error rather than silently ignored.
func unknownKeys(n *yaml.Node, t reflect.Type, path string, problems *[]string) {
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			unknownKeys(c, t, path, problems)
		}
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			fields[name] = t.Field(i).Type
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			ft, ok := fields[k.Value]
			if !ok {
				*problems = append(*problems, fmt.Sprintf("line %d: unknown key %q", k.Line, path+k.Value))
				continue
			}
			unknownKeys(n.Content[i+1], ft, path+k.Value+".", problems)
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			unknownKeys(n.Content[i+1], t.Elem(), path+n.Content[i].Value+".", problems)
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for _, c := range n.Content {
			unknownKeys(c, t.Elem(), path, problems)
		}
	}
}

// yamlProblems lists a decoding error's problems. The decoder quotes the
// start of an offending value; values are expanded from the environment
// (secrets among them) by then, so the quote is dropped.
func yamlProblems(err error) []string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []string{quotedValue.ReplaceAllString(err.Error(), "a value")}
	}
	out := make([]string, len(te.Errors))
	for i, e := range te.Errors {
		out[i] = quotedValue.ReplaceAllString(e, "a value")
	}
	return out
}

var quotedValue = regexp.MustCompile("`[^`]*`")

func (c *Config) defaults() {
	if c.Listen.GRPC == "" {
		c.Listen.GRPC = ":9001"
	}
	if c.Listen.Metrics == "" {
		c.Listen.Metrics = ":9090"
	}
	c.Shutdown.DrainDelay.orDefault(5 * time.Second)
	c.Shutdown.Timeout.orDefault(15 * time.Second)
	c.JWT.Leeway.orDefault(30 * time.Second)
	c.Refresh.Skew.orDefault(30 * time.Second)
	c.Refresh.Timeout.orDefault(10 * time.Second)
	c.Refresh.LockTimeout.orDefault(30 * time.Second)
	c.Refresh.BackoffMin.orDefault(time.Second)
	c.Refresh.BackoffMax.orDefault(time.Minute)
	c.aheadDefaults()
	c.GC.Interval.orDefault(gc.DefaultInterval)
	if c.GC.Batch == 0 {
		c.GC.Batch = gc.DefaultBatch
	}
	if c.Deny.Realm == "" {
		c.Deny.Realm = "extauthz"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	c.cacheDefaults()
	c.adminDefaults()
	c.Connect.TicketTTL.orDefault(10 * time.Minute)
	if c.Connect.Login.Issuer == "" {
		c.Connect.Login.Issuer = c.JWT.Issuer
	}
	if len(c.Connect.Login.Scopes) == 0 {
		c.Connect.Login.Scopes = []string{"openid"}
	}
	if c.Connect.Login.TokenEndpointAuth == "" {
		c.Connect.Login.TokenEndpointAuth = LoginSecretBasic
	}
	for name, p := range c.Providers {
		p.Header = strings.ToLower(p.Header)
		p.IDTokenHeader = strings.ToLower(p.IDTokenHeader)
		if p.Header == "" {
			p.Header = "authorization"
		}
		c.Providers[name] = p
	}
	for i := range c.Routes {
		c.Routes[i].Host = strings.ToLower(c.Routes[i].Host)
	}
}

func (c *Config) validate() []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }

	if c.Database.URL == "" {
		add("database.url is required (or set DATABASE_URL)")
	} else if !validDatabaseURL(c.Database.URL) {
		add("database.url " + databaseURLRule)
	}
	if _, _, err := net.SplitHostPort(c.Listen.GRPC); err != nil {
		add("listen.grpc must be host:port or :port")
	}
	if _, _, err := net.SplitHostPort(c.Listen.Metrics); err != nil && c.Listen.Metrics != MetricsOff {
		add("listen.metrics must be host:port, :port or \"off\"")
	}
	p = append(p, c.Listen.TLS.validate("listen.tls")...)
	p = append(p, c.validateHTTP()...)
	p = append(p, c.validateAdmin()...)
	p = append(p, c.validateConnect()...)
	p = append(p, setting.Under("jwt", c.JWT.JWTAuth().Validate())...)
	if c.JWT.JWKSFile == "" {
		p = append(p, c.checkTransport("jwt.jwks_url", c.JWT.JWKSURL)...)
	}
	for _, d := range []struct {
		key string
		d   Duration
	}{{"jwt.leeway", c.JWT.Leeway}, {"refresh.skew", c.Refresh.Skew}, {"refresh.timeout", c.Refresh.Timeout},
		{"refresh.lock_timeout", c.Refresh.LockTimeout}, {"refresh.backoff_min", c.Refresh.BackoffMin}, {"refresh.backoff_max", c.Refresh.BackoffMax},
		{"shutdown.drain_delay", c.Shutdown.DrainDelay}, {"shutdown.timeout", c.Shutdown.Timeout}} {
		if d.d.bad != "" {
			add("line %d: %s is not a duration (use e.g. 30s, 2m)", d.d.line, d.key)
		}
	}
	if len(c.Providers) == 0 {
		add("providers: define at least one provider")
	}
	for _, name := range sortedKeys(c.Providers) {
		pr := c.Providers[name]
		at := "providers." + name
		if !providerName.MatchString(name) {
			add("%s: provider names use letters, digits, '-' and '_'", at)
		}
		// The OAuth client owns the provider's token endpoint and client
		// settings, the ID-token verifier its issuer; config adds only the
		// transport rule, which allow_insecure_http relaxes.
		oauthProblems := setting.Under(at, pr.OAuthClient().Validate())
		switch _, known := authStyles[pr.AuthStyle]; {
		case pr.AuthStyle != "" && pr.TokenEndpointAuth != "":
			add("%s: set token_endpoint_auth or auth_style (its older spelling), not both", at)
		case pr.AuthStyle != "" && !known:
			// Said once, under the key that was written.
			add(`%s.auth_style must be "header" or "params" (or set token_endpoint_auth instead)`, at)
			oauthProblems = slices.DeleteFunc(oauthProblems, func(s string) bool { return strings.HasPrefix(s, at+".token_endpoint_auth ") })
		}
		p = append(p, oauthProblems...)
		p = append(p, setting.Under(at, pr.IDToken().Validate())...)
		p = append(p, c.checkTransport(at+".token_url", pr.TokenURL)...)
		p = append(p, c.checkTransport(at+".revocation_url", pr.RevocationURL)...)
		p = append(p, c.checkTransport(at+".authorization_url", pr.AuthorizationURL)...)
		p = append(p, c.checkTransport(at+".issuer", pr.Issuer)...)
	}
	// The decision owns the providers' headers, the routes, the default
	// route and default_providers.
	p = append(p, setting.Under("", c.Authz().Validate())...)
	if c.Refresh.Skew.D() < 0 {
		add("refresh.skew must not be negative")
	}
	if c.Refresh.Timeout.D() <= 0 {
		add("refresh.timeout must be positive")
	}
	if least := upstreamtoken.MinLockTimeout(c.Refresh.Timeout.D(), PersistTimeout); c.Refresh.LockTimeout.D() < least {
		add("refresh.lock_timeout must be at least refresh.timeout + 6s (%v), so that no lease lapses while its owner may still be waiting on the provider", least)
	}
	if c.Refresh.BackoffMin.D() <= 0 || c.Refresh.BackoffMax.D() < c.Refresh.BackoffMin.D() {
		add("refresh.backoff_min must be positive and at most refresh.backoff_max")
	}
	if c.Shutdown.DrainDelay.D() < 0 {
		add("shutdown.drain_delay must not be negative")
	}
	if c.Shutdown.Timeout.D() <= 0 {
		add("shutdown.timeout must be positive")
	}
	switch d := c.GC.Interval; {
	case d.bad != "":
		add("line %d: gc.interval is not a duration (use e.g. 10m, 0 to disable)", d.line)
	case d.D() < 0 || (d.D() > 0 && d.D() < time.Second):
		add("gc.interval must be 0 (disabled) or at least 1s")
	}
	if c.GC.Batch < 0 {
		add("gc.batch must be positive")
	}
	if c.Deny.ResourceMetadata != "" && !isHTTPURL(c.Deny.ResourceMetadata) {
		add("deny.resource_metadata must be an absolute http(s) URL")
	}
	if strings.ContainsAny(c.Deny.Realm, "\r\n\x00") {
		add("deny.realm must be a single line")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level must be debug, info, warn or error")
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		add("log.format must be json or text")
	}
	p = append(p, c.validateCache()...)
	p = append(p, c.validateAhead()...)
	p = append(p, c.loadKeys()...)
	return p
}

// checkTransport refuses, under key at, an http:// URL to a host that is
// not a loopback address, unless allow_insecure_http is set: what goes over
// these connections (client secrets, refresh tokens, the keys that verify
// every JWT) must not cross a network in the clear. A URL that is not an
// absolute http URL is left to the package that owns the setting. The
// message never quotes the URL, which may carry a secret.
func (c *Config) checkTransport(at, raw string) []string {
	if c.AllowInsecureHTTP || !setting.CleartextToRemote(raw) {
		return nil
	}
	return []string{fmt.Sprintf("%s must use https (plain http is allowed only to a loopback host, or anywhere with allow_insecure_http: true)", at)}
}

// loadKeys reads and checks the encryption keys. Messages never contain key
// material.
func (c *Config) loadKeys() []string {
	e := &c.Encryption
	if len(e.Keys) == 0 {
		return []string{"encryption.keys is required: tokens are stored encrypted (generate a key with 'extauthz keys generate')"}
	}
	var p []string
	keys := make([]tokencrypt.Key, 0, len(e.Keys))
	for i, k := range e.Keys {
		at := fmt.Sprintf("encryption.keys[%d]", i)
		if k.ID != "" {
			at = fmt.Sprintf("encryption.keys[%s]", k.ID)
		}
		text := k.Key
		switch {
		case k.Key != "" && k.KeyFile != "":
			p = append(p, at+": set key or key_file, not both")
			continue
		case k.KeyFile != "":
			b, err := os.ReadFile(k.KeyFile)
			if err != nil {
				p = append(p, fmt.Sprintf("%s.key_file: cannot read %s", at, k.KeyFile))
				continue
			}
			text = string(b)
		case k.Key == "":
			p = append(p, at+": key or key_file is required")
			continue
		}
		secret, err := tokencrypt.ParseKey(text)
		if err != nil {
			p = append(p, fmt.Sprintf("%s: %v", at, err))
			continue
		}
		keys = append(keys, tokencrypt.Key{ID: k.ID, Secret: secret})
	}
	if e.Primary == "" && len(e.Keys) == 1 {
		e.Primary = e.Keys[0].ID
	}
	if e.Primary == "" {
		p = append(p, "encryption.primary must name the key that encrypts")
	}
	if len(p) > 0 {
		return p
	}
	ring, err := tokencrypt.New(keys, e.Primary)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			p = append(p, "encryption: "+line)
		}
		return p
	}
	c.keyring = ring
	return nil
}

// JWTAuth returns the jwt section as the caller's JWT verifier takes it. The
// verifier's cache size belongs to the cache section (Cache.JWTEntries).
func (j JWT) JWTAuth() jwtauth.Config {
	return jwtauth.Config{Issuer: j.Issuer, Audiences: j.Audiences, JWKSURL: j.JWKSURL, JWKSFile: j.JWKSFile, Leeway: j.Leeway.D()}
}

// authStyles are the auth_style values, by the method each stands for.
var authStyles = map[string]oauthclient.AuthMethod{
	"header": oauthclient.ClientSecretBasic,
	"params": oauthclient.ClientSecretPost,
}

// OAuthClient returns the provider as the OAuth client takes it. The method
// is token_endpoint_auth, else auth_style's; a value that is neither is
// left unset, which oauthclient.Provider.Validate reports.
func (p Provider) OAuthClient() oauthclient.Provider {
	method := authStyles[p.AuthStyle]
	if p.TokenEndpointAuth != "" {
		method, _ = oauthclient.ParseAuthMethod(p.TokenEndpointAuth)
	}
	return oauthclient.Provider{
		Issuer: p.Issuer, AuthorizationURL: p.AuthorizationURL, TokenURL: p.TokenURL, RevocationURL: p.RevocationURL,
		ClientID: p.ClientID, ClientSecret: p.ClientSecret, AuthMethod: method,
		PrivateKeyFile: p.PrivateKeyFile, KeyID: p.KeyID, AssertionAudience: oauthclient.Audience(p.AssertionAudience),
		ClientCertFile: p.ClientCertFile, ClientKeyFile: p.ClientKeyFile, CAFile: p.CAFile,
		Scopes: p.Scopes,
	}
}

// IDToken returns the provider as the ID-token verifier takes it; without
// an issuer its ID tokens are not verified. The caller adds the HTTP client
// that trusts ca_file.
func (p Provider) IDToken() idtoken.Provider {
	return idtoken.Provider{Issuer: p.Issuer, ClientID: p.ClientID}
}

// Authz returns the settings of the decision: the providers' headers, the
// routes and the deny section. Its Observer and Connect are nil.
func (c *Config) Authz() authz.Config {
	providers := make(map[string]authz.Provider, len(c.Providers))
	for name, p := range c.Providers {
		providers[name] = authz.Provider{Header: p.Header, IDTokenHeader: p.IDTokenHeader}
	}
	routes := make([]authz.Route, len(c.Routes))
	for i, r := range c.Routes {
		routes[i] = authz.Route{Host: r.Host, PathPrefix: r.PathPrefix, CaseSensitive: r.CaseSensitive, Providers: r.Providers,
			RequiredScopes: r.RequiredScopes, DenyStyle: r.DenyStyle}
	}
	return authz.Config{
		Providers:        providers,
		DefaultProviders: c.DefaultProviders,
		Routes:           routes,
		DefaultRoute: authz.Route{Providers: c.DefaultRoute.Providers, RequiredScopes: c.DefaultRoute.RequiredScopes,
			DenyStyle: c.DefaultRoute.DenyStyle},
		RoutesOnly:       c.RoutesOnly,
		Realm:            c.Deny.Realm,
		ResourceMetadata: c.Deny.ResourceMetadata,
	}
}

// readable reports why the regular file at path cannot be read, if it
// cannot. Its contents are checked when the server starts.
func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("cannot read %q: %w", path, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && !st.Mode().IsRegular() {
		return fmt.Errorf("%q is not a regular file", path)
	}
	return nil
}

var providerName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// sharesListener reports whether addr, a host:port on a fixed port (not
// ":0", which picks a free one each time), is also one of others.
func sharesListener(addr string, others ...string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port != "0" && slices.Contains(others, addr)
}
