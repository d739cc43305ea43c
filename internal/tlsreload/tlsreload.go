// Package tlsreload builds the server-side TLS configuration of the gRPC
// listener from PEM files that may be replaced while the server runs
// (cert-manager, a Vault agent, a Kubernetes secret volume). The same
// reloading certificate serves as a client certificate
// (GetClientCertificate), and LoadRoots reads a file of extra trusted CAs.
//
// A Reloader reads a certificate chain, its private key and optionally a
// client CA bundle. Its TLSConfig requires TLS 1.2 or later and, when a client
// CA is set, requires and verifies a client certificate issued by that CA
// (mTLS). On a handshake, at most once per Options.Interval, the Reloader
// reads the files again and compares a SHA-256 hash of their contents with
// what it serves; when they changed and parse as a consistent set (the key
// matches the certificate, the CA bundle parses), new connections get the new
// certificate and CA pool. A set that does not load (a half-written file, a
// key that does not yet match its new certificate) is logged once, without
// any key material, and the previous good set stays in service. Established
// connections are not affected.
package tlsreload

import (
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultInterval is the default minimum time between two checks of the
// files.
const DefaultInterval = time.Second

// Files names the PEM files. Cert and Key are required; ClientCA is
// optional. Cert holds the server certificate first, then any intermediate
// certificates; Key holds its private key (PKCS #8, PKCS #1 or SEC 1, not
// encrypted). Cert and Key may name the same file.
type Files struct {
	Cert     string
	Key      string
	ClientCA string
}

// Options tunes a Reloader. The zero value is ready to use.
type Options struct {
	// Logger receives a line when a changed set of files is loaded and when
	// one cannot be loaded. Nil discards them.
	Logger *slog.Logger
	// Interval is the minimum time between two checks of the files.
	// Zero means DefaultInterval.
	Interval time.Duration
	// ClientIdentities, when not empty, are the subject alternative names
	// of which a client certificate must carry at least one: a DNS name
	// (compared case-insensitively) or a URI with a scheme, such as the
	// SPIFFE ID spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account
	// (compared exactly). Each must pass CheckIdentity. They require
	// Files.ClientCA: without a CA nothing verifies the certificate that
	// carries them.
	ClientIdentities []string
	// ClientCertOptional verifies a client certificate against the client
	// CA when one is presented, and admits a client without one (the
	// session API, whose callers may authenticate with a token instead).
	// ClientIdentities, when set, still refuse a certificate that carries
	// none of them.
	ClientCertOptional bool
}

// ErrIdentity wraps the reason a client identity is refused by
// CheckIdentity.
var ErrIdentity = errors.New("invalid client identity")

// CheckIdentity reports whether s can be a client identity: a URI with a
// scheme and something after it ("spiffe://trust-domain/path"), without
// a query or fragment, or an exact DNS name (letters, digits, '-', '_' and
// dots between labels; no wildcard). The error wraps ErrIdentity and never
// quotes s.
func CheckIdentity(s string) error {
	if strings.Contains(s, ":") {
		u, err := url.Parse(s)
		switch {
		case err != nil || u.Scheme == "" || (u.Host == "" && u.Opaque == "" && u.Path == ""):
			return fmt.Errorf("%w: a URI identity needs a scheme and a name, as a SPIFFE ID has", ErrIdentity)
		case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			return fmt.Errorf("%w: a URI identity has no user, query or fragment", ErrIdentity)
		}
		return nil
	}
	if strings.Contains(s, "*") {
		return fmt.Errorf("%w: wildcards are not supported (list each DNS name)", ErrIdentity)
	}
	if !dnsName.MatchString(s) {
		return fmt.Errorf("%w: not a DNS name or a URI", ErrIdentity)
	}
	return nil
}

var dnsName = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

// Identities is a set of accepted client identities in canonical form. The
// TLS listeners refuse a handshake with none of them; the session API uses
// the same set to authenticate a caller by its certificate.
type Identities struct {
	dns  map[string]bool // lower-case
	uris map[string]bool // url.URL.String()
}

// NewIdentities returns the set of list, each of which must pass
// CheckIdentity; an empty list gives nil.
func NewIdentities(list []string) (*Identities, error) {
	if len(list) == 0 {
		return nil, nil
	}
	ids := &Identities{dns: map[string]bool{}, uris: map[string]bool{}}
	for i, s := range list {
		if err := CheckIdentity(s); err != nil {
			return nil, fmt.Errorf("client identity %d: %w", i+1, err)
		}
		if strings.Contains(s, ":") {
			u, _ := url.Parse(s)
			ids.uris[u.String()] = true
		} else {
			ids.dns[strings.ToLower(s)] = true
		}
	}
	return ids, nil
}

// allows reports whether the certificate carries one of the identities.
func (ids *Identities) allows(cert *x509.Certificate) bool {
	_, ok := ids.Match(cert)
	return ok
}

// Match returns the first of the certificate's subject alternative names
// (URIs first, then DNS names) that is in the set. A nil set matches
// nothing.
func (ids *Identities) Match(cert *x509.Certificate) (string, bool) {
	if ids == nil || cert == nil {
		return "", false
	}
	for _, u := range cert.URIs {
		if ids.uris[u.String()] {
			return u.String(), true
		}
	}
	for _, n := range cert.DNSNames {
		if ids.dns[strings.ToLower(n)] {
			return strings.ToLower(n), true
		}
	}
	return "", false
}

// errIdentityRefused fails a handshake whose verified client certificate
// carries none of the identities.
var errIdentityRefused = errors.New("tls: client certificate identity not allowed")

// Reloader serves the TLS configuration built from Files, reloading it when
// the files change. It is safe for concurrent use.
type Reloader struct {
	files    Files
	log      *slog.Logger
	interval time.Duration
	epoch    time.Time   // the origin of nextCheck, for a monotonic clock
	optional bool        // Options.ClientCertOptional
	ids      *Identities // nil: any certificate the CA verifies

	cur       atomic.Pointer[generation]
	nextCheck atomic.Int64 // nanoseconds since epoch

	mu         sync.Mutex // serialises checks; guards lastFailed
	lastFailed [sha256.Size]byte
}

// generation is one loaded set of files.
type generation struct {
	sum    [sha256.Size]byte
	cert   *tls.Certificate
	config *tls.Config
}

// New reads and validates the files: they must be readable, Cert must hold a
// certificate, Key a private key matching it, and ClientCA, when set, at
// least one certificate. Options.ClientIdentities must each pass
// CheckIdentity and need ClientCA. The error names the file at fault and
// never contains key material.
func New(files Files, opts Options) (*Reloader, error) {
	if files.Cert == "" || files.Key == "" {
		return nil, errors.New("tls: a certificate file and a private key file are both required")
	}
	if len(opts.ClientIdentities) > 0 && files.ClientCA == "" {
		return nil, errors.New("tls: client identities need a client CA: without one no client certificate is verified")
	}
	ids, err := NewIdentities(opts.ClientIdentities)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	r := &Reloader{files: files, log: opts.Logger, interval: opts.Interval, epoch: time.Now(), ids: ids,
		optional: opts.ClientCertOptional}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.interval <= 0 {
		r.interval = DefaultInterval
	}
	sum, contents, err := r.read()
	if err != nil {
		return nil, err
	}
	g, err := r.load(sum, contents)
	if err != nil {
		return nil, err
	}
	r.cur.Store(g)
	r.nextCheck.Store(int64(r.interval))
	r.logLoaded("TLS certificate loaded", g)
	return r, nil
}

// TLSConfig returns the configuration for the server. Its GetConfigForClient
// answers each handshake with the current generation's complete
// configuration (certificate, minimum version, client authentication and CA
// pool), checking the files first when Interval has passed since the last
// check. grpc's credentials.NewTLS adds the h2 protocol to it.
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Without GetConfigForClient these still fail closed: a client
		// certificate is required and no CA is trusted.
		ClientAuth: r.cur.Load().config.ClientAuth,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.current().cert, nil
		},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.current().config, nil
		},
	}
}

// GetClientCertificate is a client's tls.Config.GetClientCertificate: it
// presents the current certificate (whatever the server asks for), reading
// the files again as TLSConfig does. Files.ClientCA and the Options about
// client certificates play no part in it.
func (r *Reloader) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.current().cert, nil
}

// NotAfter returns the end of the validity period of the certificate that
// a new connection is served: the leaf of the current set, after checking
// the files as a handshake does (at most once per Options.Interval). So a
// renewed certificate shows before any client connects again, which a
// metric scraped between long-lived connections needs.
func (r *Reloader) NotAfter() time.Time {
	return r.current().cert.Leaf.NotAfter
}

// LoadRoots returns the system's trusted roots (or base's, when base is not
// nil) together with the certificates of the PEM file at path: the roots of
// a client that talks to a server whose CA is private. It is read once. The
// error names the file and never quotes it.
func LoadRoots(path string, base *x509.CertPool) (*x509.CertPool, error) {
	data, err := readFile("CA", path)
	if err != nil {
		return nil, err
	}
	cas, err := ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("CA file %q: %w", path, err)
	}
	var pool *x509.CertPool
	if base != nil {
		pool = base.Clone()
	} else if pool, err = x509.SystemCertPool(); err != nil {
		pool = x509.NewCertPool()
	}
	for _, ca := range cas {
		pool.AddCert(ca)
	}
	return pool, nil
}

// current returns the generation to serve, first checking the files if the
// interval has passed and no other handshake is checking them already.
func (r *Reloader) current() *generation {
	now := int64(time.Since(r.epoch))
	if now >= r.nextCheck.Load() && r.mu.TryLock() {
		if now >= r.nextCheck.Load() {
			r.check()
			r.nextCheck.Store(int64(time.Since(r.epoch)) + int64(r.interval))
		}
		r.mu.Unlock()
	}
	return r.cur.Load()
}

// check loads the files if their contents changed. r.mu is held.
func (r *Reloader) check() {
	sum, contents, err := r.read()
	if err == nil && sum == r.cur.Load().sum {
		return
	}
	if err != nil {
		// A file that cannot be read (being replaced, say) is a failure of
		// its own; the error text tells one such state from another.
		sum = sha256.Sum256([]byte(err.Error()))
	}
	if sum == r.lastFailed {
		return // already reported
	}
	var g *generation
	if err == nil {
		g, err = r.load(sum, contents)
	}
	if err != nil {
		r.lastFailed = sum
		r.log.Warn("TLS files changed but cannot be loaded; still serving the previous certificate", "error", err)
		return
	}
	r.lastFailed = [sha256.Size]byte{}
	r.cur.Store(g)
	r.logLoaded("TLS certificate reloaded", g)
}

func (r *Reloader) logLoaded(msg string, g *generation) {
	leaf := g.cert.Leaf
	r.log.Info(msg, "cert_file", r.files.Cert, "subject", leaf.Subject.String(),
		"serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter, "client_auth", g.config.ClientAuth == tls.RequireAndVerifyClientCert)
	if time.Now().After(leaf.NotAfter) {
		r.log.Warn("TLS certificate has expired", "cert_file", r.files.Cert, "not_after", leaf.NotAfter)
	}
}

// contents are the raw files of one check.
type contents struct {
	cert, key, clientCA []byte
}

// read reads the files and hashes them together.
func (r *Reloader) read() ([sha256.Size]byte, contents, error) {
	var c contents
	var err error
	if c.cert, err = readFile("certificate", r.files.Cert); err != nil {
		return [sha256.Size]byte{}, c, err
	}
	if c.key, err = readFile("private key", r.files.Key); err != nil {
		return [sha256.Size]byte{}, c, err
	}
	if r.files.ClientCA != "" {
		if c.clientCA, err = readFile("client CA", r.files.ClientCA); err != nil {
			return [sha256.Size]byte{}, c, err
		}
	}
	h := sha256.New()
	for _, b := range [][]byte{c.cert, c.key, c.clientCA} {
		_ = binary.Write(h, binary.BigEndian, uint64(len(b)))
		h.Write(b)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum, c, nil
}

func readFile(role, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is named below, once
		}
		return nil, fmt.Errorf("%s file %q: %w", role, path, err)
	}
	return b, nil
}

// load parses one set of files into a generation.
func (r *Reloader) load(sum [sha256.Size]byte, c contents) (*generation, error) {
	chain, err := ParseCertificates(c.cert)
	if err != nil {
		return nil, fmt.Errorf("certificate file %q: %w", r.files.Cert, err)
	}
	key, err := ParsePrivateKey(c.key)
	if err != nil {
		return nil, fmt.Errorf("private key file %q: %w", r.files.Key, err)
	}
	pub, ok := chain[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("private key file %q does not match the certificate in %q", r.files.Key, r.files.Cert)
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	config := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*cert},
	}
	if r.files.ClientCA != "" {
		cas, err := ParseCertificates(c.clientCA)
		if err != nil {
			return nil, fmt.Errorf("client CA file %q: %w", r.files.ClientCA, err)
		}
		pool := x509.NewCertPool()
		for _, ca := range cas {
			pool.AddCert(ca)
		}
		config.ClientAuth = tls.RequireAndVerifyClientCert
		if r.optional {
			config.ClientAuth = tls.VerifyClientCertIfGiven
		}
		config.ClientCAs = pool
		// A resumed session skips verification of the client certificate:
		// without tickets every connection is checked against the current
		// CA pool. Envoy's connections are long-lived, so this costs little.
		config.SessionTicketsDisabled = true
		if r.ids != nil {
			config.VerifyConnection = r.verifyIdentity
		}
	}
	return &generation{sum: sum, cert: cert, config: config}, nil
}

// verifyIdentity refuses a connection whose verified client certificate
// carries none of the identities. It runs after the chain is verified
// against the CA pool, so the leaf is one the CA issued. The refusal is
// logged with the certificate's names (identities, not secrets).
func (r *Reloader) verifyIdentity(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 && r.optional {
		return nil // no certificate, allowed by ClientCertOptional
	}
	if len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return errIdentityRefused // not reached: the CA requires a verified certificate
	}
	leaf := cs.PeerCertificates[0]
	if r.ids.allows(leaf) {
		return nil
	}
	uris := make([]string, len(leaf.URIs))
	for i, u := range leaf.URIs {
		uris[i] = u.String()
	}
	r.log.Warn("TLS client refused: its certificate carries none of the allowed client identities",
		"dns_names", leaf.DNSNames, "uris", uris, "subject", leaf.Subject.String(), "serial", leaf.SerialNumber.Text(16))
	return errIdentityRefused
}

// ParseCertificates returns the CERTIFICATE blocks of a PEM file, in order.
// Private key blocks (a combined file) are skipped; other blocks are errors.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		switch {
		case block.Type == "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
			}
			certs = append(certs, c)
		case strings.HasSuffix(block.Type, "PRIVATE KEY"):
		default:
			return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
		}
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return certs, nil
}

// ParsePrivateKey returns the first private key of a PEM file. Its errors
// never quote the file.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM private key found")
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			continue // certificates of a combined file, EC PARAMETERS
		}
		if block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
			return nil, errors.New("encrypted private keys are not supported")
		}
		if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
			if s, ok := k.(crypto.Signer); ok {
				return s, nil
			}
			return nil, errors.New("unsupported private key type")
		}
		if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
			return k, nil
		}
		if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
			return k, nil
		}
		return nil, errors.New("cannot parse the private key (PKCS #8, PKCS #1 or SEC 1 expected)")
	}
}
