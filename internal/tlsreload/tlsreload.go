// Package tlsreload builds the server-side TLS configuration of the gRPC
// listener from PEM files that may be replaced while the server runs
// (cert-manager, a Vault agent, a Kubernetes secret volume).
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
	"os"
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
}

// Reloader serves the TLS configuration built from Files, reloading it when
// the files change. It is safe for concurrent use.
type Reloader struct {
	files    Files
	log      *slog.Logger
	interval time.Duration
	epoch    time.Time // the origin of nextCheck, for a monotonic clock

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
// least one certificate. The error names the file at fault and never
// contains key material.
func New(files Files, opts Options) (*Reloader, error) {
	if files.Cert == "" || files.Key == "" {
		return nil, errors.New("tls: a certificate file and a private key file are both required")
	}
	r := &Reloader{files: files, log: opts.Logger, interval: opts.Interval, epoch: time.Now()}
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
	chain, err := parseCertificates(c.cert)
	if err != nil {
		return nil, fmt.Errorf("certificate file %q: %w", r.files.Cert, err)
	}
	key, err := parsePrivateKey(c.key)
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
		cas, err := parseCertificates(c.clientCA)
		if err != nil {
			return nil, fmt.Errorf("client CA file %q: %w", r.files.ClientCA, err)
		}
		pool := x509.NewCertPool()
		for _, ca := range cas {
			pool.AddCert(ca)
		}
		config.ClientAuth = tls.RequireAndVerifyClientCert
		config.ClientCAs = pool
		// A resumed session skips verification of the client certificate:
		// without tickets every connection is checked against the current
		// CA pool. Envoy's connections are long-lived, so this costs little.
		config.SessionTicketsDisabled = true
	}
	return &generation{sum: sum, cert: cert, config: config}, nil
}

// parseCertificates returns the CERTIFICATE blocks of a PEM file, in order.
// Private key blocks (a combined file) are skipped; other blocks are errors.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
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

// parsePrivateKey returns the first private key of a PEM file. Its errors
// never quote the file.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
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
