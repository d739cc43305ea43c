package tlsreload

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/testutil"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/internal/tlsreload/tlstest"
	"github.com/extauthz/extauthz/server"
)

// allow is a Decider that allows every request.
type allow struct{}

func (allow) Check(context.Context, authz.Request) authz.Response {
	return authz.Response{Allowed: true, Status: 200}
}

// syncBuffer collects output written concurrently.
type syncBuffer = testutil.SyncBuffer

// fixture is a directory of TLS files and a gRPC server serving them.
type fixture struct {
	ca                  *tlstest.CA
	cert, key, clientCA string
	addr                string
	logs                *syncBuffer
	first               *tlstest.Leaf
}

// start writes a server certificate from a new CA (and, with mtls, that CA
// as the client CA) and serves Check over TLS from a Reloader on them.
func start(t *testing.T, mtls bool, interval time.Duration) *fixture {
	t.Helper()
	return startWith(t, mtls, Options{Interval: interval})
}

// startWith is start with more options; its Logger is replaced.
func startWith(t *testing.T, mtls bool, opts Options) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{
		ca:   tlstest.NewCA(t, "test CA"),
		cert: filepath.Join(dir, "tls.crt"),
		key:  filepath.Join(dir, "tls.key"),
		logs: &syncBuffer{},
	}
	f.first = f.ca.Server(t, "server-1")
	f.first.WriteFiles(t, f.cert, f.key)
	files := Files{Cert: f.cert, Key: f.key}
	if mtls {
		f.clientCA = filepath.Join(dir, "client-ca.crt")
		tlstest.WriteFile(t, f.clientCA, f.ca.PEM)
		files.ClientCA = f.clientCA
	}
	opts.Logger = slog.New(slog.NewTextHandler(f.logs, nil))
	r, err := New(files, opts)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := server.New(allow{}, server.Options{ServerOptions: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(r.TLSConfig()))}})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	f.addr = lis.Addr().String()
	return f
}

// clientTLS trusts f's CA and presents the client certificate, if any, even
// when the server's list of acceptable CAs does not name its issuer (Go's
// client would otherwise send none): the server itself must refuse it.
func (f *fixture) clientTLS(t *testing.T, client ...*tlstest.Leaf) *tls.Config {
	t.Helper()
	c := &tls.Config{RootCAs: f.ca.Pool()}
	if len(client) > 0 {
		cert := client[0].TLSCertificate(t)
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	return c
}

// check sends one Check on a new connection and returns the error and the
// serial number of the server certificate seen.
func check(t *testing.T, addr string, creds credentials.TransportCredentials) (*big.Int, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var p peer.Peer
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/"}},
	}}, grpc.Peer(&p))
	if err != nil {
		return nil, err
	}
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("Check answered %v, want OK", resp.GetStatus())
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		t.Fatalf("peer auth info = %#v, want TLS with a certificate", p.AuthInfo)
	}
	if info.State.Version < tls.VersionTLS12 {
		t.Errorf("TLS version %x", info.State.Version)
	}
	return info.State.PeerCertificates[0].SerialNumber, nil
}

func mustServe(t *testing.T, addr string, creds credentials.TransportCredentials, want *big.Int) {
	t.Helper()
	got, err := check(t, addr, creds)
	if err != nil {
		t.Fatalf("Check over TLS: %v", err)
	}
	if want != nil && got.Cmp(want) != 0 {
		t.Fatalf("server certificate serial %x, want %x", got, want)
	}
}

func mustRefuse(t *testing.T, what, addr string, creds credentials.TransportCredentials) {
	t.Helper()
	if _, err := check(t, addr, creds); err == nil {
		t.Fatalf("%s: Check succeeded, want the connection refused", what)
	} else if status.Code(err) != codes.Unavailable {
		t.Errorf("%s: err = %v, want Unavailable", what, err)
	}
}

func TestMutualTLS(t *testing.T) {
	f := start(t, true, time.Hour)
	client := f.ca.Client(t, "envoy")
	other := tlstest.NewCA(t, "other CA").Client(t, "intruder")

	mustServe(t, f.addr, credentials.NewTLS(f.clientTLS(t, client)), f.first.Cert.SerialNumber)
	mustRefuse(t, "no client certificate", f.addr, credentials.NewTLS(f.clientTLS(t)))
	mustRefuse(t, "client certificate from another CA", f.addr, credentials.NewTLS(f.clientTLS(t, other)))
	mustRefuse(t, "plaintext", f.addr, insecure.NewCredentials())

	// The refusals are the server's verdict, sent as TLS alerts.
	for _, tc := range []struct {
		what  string
		cfg   *tls.Config
		alert string
	}{
		{"no client certificate", f.clientTLS(t), "certificate required"},
		{"client certificate from another CA", f.clientTLS(t, other), "unknown certificate authority"},
	} {
		tc.cfg.NextProtos = []string{"h2"}
		conn, err := tls.Dial("tcp", f.addr, tc.cfg)
		if err == nil {
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tc.alert) {
			t.Errorf("%s: raw TLS error = %v, want alert %q", tc.what, err, tc.alert)
		}
	}

	old := f.clientTLS(t, client)
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	mustRefuse(t, "TLS 1.1", f.addr, credentials.NewTLS(old))
}

// rawTLSError dials with cfg and returns the error the handshake, or the
// first read after it (TLS 1.3 clients learn of a refused certificate
// there), ends with.
func rawTLSError(addr string, cfg *tls.Config) error {
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.Dial("tcp", addr, cfg)
	if err == nil {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	return err
}

const gatewayID = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"

// TestClientIdentities: with client identities, a certificate the CA
// verifies must also carry one of them, as a URI or DNS name; the refusal is
// a bad_certificate alert at the handshake, logged with the names seen.
func TestClientIdentities(t *testing.T) {
	f := startWith(t, true, Options{Interval: interval, ClientIdentities: []string{gatewayID, "Envoy.Internal.example"}})
	other := tlstest.NewCA(t, "other CA")

	for _, tc := range []struct {
		name   string
		client *tlstest.Leaf
		ok     bool
	}{
		{"gateway SPIFFE ID", f.ca.ClientWithSANs(t, "gw", "spiffe://cluster.local/ns/other/sa/x", gatewayID), true},
		{"DNS name, any case", f.ca.ClientWithSANs(t, "envoy", "envoy.internal.EXAMPLE"), true},
		{"no SAN at all", f.ca.Client(t, "envoy"), false},
		{"common name is not an identity", f.ca.ClientWithSANs(t, "envoy.internal.example"), false},
		{"another workload's SPIFFE ID", f.ca.ClientWithSANs(t, "api", "spiffe://cluster.local/ns/api/sa/api"), false},
		{"prefix of an allowed ID", f.ca.ClientWithSANs(t, "gw", "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway"), false},
		{"allowed ID extended", f.ca.ClientWithSANs(t, "gw", gatewayID+"-2"), false},
		{"URI where a DNS name is allowed", f.ca.ClientWithSANs(t, "envoy", "dns://envoy.internal.example"), false},
		{"allowed ID from another CA", other.ClientWithSANs(t, "gw", gatewayID), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			creds := credentials.NewTLS(f.clientTLS(t, tc.client))
			if tc.ok {
				mustServe(t, f.addr, creds, nil)
				return
			}
			mustRefuse(t, tc.name, f.addr, creds)
			if err := rawTLSError(f.addr, f.clientTLS(t, tc.client)); err == nil || !strings.Contains(err.Error(), "bad certificate") && !strings.Contains(err.Error(), "unknown certificate authority") {
				t.Errorf("raw TLS error = %v, want a bad certificate alert", err)
			}
		})
	}
	if !strings.Contains(f.logs.String(), "carries none of the allowed client identities") ||
		!strings.Contains(f.logs.String(), "spiffe://cluster.local/ns/api/sa/api") {
		t.Errorf("refusals not logged with the names seen:\n%s", f.logs)
	}

	// A rotated client CA keeps the identity check.
	ca2 := tlstest.NewCA(t, "rotated CA")
	tlstest.WriteFile(t, f.clientCA, ca2.PEM)
	wait()
	mustServe(t, f.addr, credentials.NewTLS(f.clientTLS(t, ca2.ClientWithSANs(t, "gw", gatewayID))), nil)
	mustRefuse(t, "rotated CA, no identity", f.addr, credentials.NewTLS(f.clientTLS(t, ca2.Client(t, "envoy"))))
	mustRefuse(t, "replaced CA, identity", f.addr, credentials.NewTLS(f.clientTLS(t, f.ca.ClientWithSANs(t, "gw", gatewayID))))
}

func TestCheckIdentity(t *testing.T) {
	for s, ok := range map[string]bool{
		gatewayID:                       true,
		"spiffe://example.org/workload": true,
		"urn:example:envoy":             true,
		"envoy.internal":                true,
		"envoy":                         true,
		"":                              false,
		"*.internal":                    false,
		"envoy internal":                false,
		"spiffe://":                     false,
		"://no-scheme":                  false,
		"spiffe://td/x?y=1":             false,
		"spiffe://td/x#frag":            false,
		"https://user:secret@host/":     false,
		"envoy.internal.":               false,
		"bad\nname":                     false,
	} {
		err := CheckIdentity(s)
		if (err == nil) != ok {
			t.Errorf("CheckIdentity(%q) = %v, want ok=%v", s, err, ok)
		}
		if err != nil && (!errors.Is(err, ErrIdentity) || (s != "" && strings.Contains(err.Error(), s))) {
			t.Errorf("CheckIdentity(%q) = %v: must wrap ErrIdentity and not quote the value", s, err)
		}
	}
}

func TestTLSWithoutClientCA(t *testing.T) {
	f := start(t, false, time.Hour)
	mustServe(t, f.addr, credentials.NewTLS(f.clientTLS(t)), f.first.Cert.SerialNumber)
	// A client certificate is neither required nor a problem.
	mustServe(t, f.addr, credentials.NewTLS(f.clientTLS(t, f.ca.Client(t, "envoy"))), nil)
	mustRefuse(t, "plaintext", f.addr, insecure.NewCredentials())
}

// wait lets the reload interval pass.
func wait() { time.Sleep(30 * time.Millisecond) }

const interval = 10 * time.Millisecond

func TestReloadServerCertificate(t *testing.T) {
	f := start(t, true, interval)
	creds := credentials.NewTLS(f.clientTLS(t, f.ca.Client(t, "envoy")))
	mustServe(t, f.addr, creds, f.first.Cert.SerialNumber)

	// Replaced: a new connection sees the new certificate.
	second := f.ca.Server(t, "server-2")
	second.WriteFiles(t, f.cert, f.key)
	wait()
	mustServe(t, f.addr, creds, second.Cert.SerialNumber)
	if !strings.Contains(f.logs.String(), "TLS certificate reloaded") {
		t.Errorf("reload not logged:\n%s", f.logs)
	}

	// A half-written certificate keeps the previous one in service.
	tlstest.WriteFile(t, f.cert, second.CertPEM[:len(second.CertPEM)/2])
	wait()
	mustServe(t, f.addr, creds, second.Cert.SerialNumber)
	mustServe(t, f.addr, creds, second.Cert.SerialNumber)

	// A new certificate whose key is not written yet: still the previous one.
	third := f.ca.Server(t, "server-3")
	tlstest.WriteFile(t, f.cert, third.CertPEM)
	wait()
	mustServe(t, f.addr, creds, second.Cert.SerialNumber)
	// Then the key arrives.
	tlstest.WriteFile(t, f.key, third.KeyPEM)
	wait()
	mustServe(t, f.addr, creds, third.Cert.SerialNumber)

	// A key file that is garbage: refused, logged once, nothing secret.
	tlstest.WriteFile(t, f.key, []byte("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n"))
	wait()
	mustServe(t, f.addr, creds, third.Cert.SerialNumber)
	wait()
	mustServe(t, f.addr, creds, third.Cert.SerialNumber)

	logs := f.logs.String()
	if n := strings.Count(logs, "cannot be loaded"); n != 3 {
		t.Errorf("each failed set must be logged once (3 sets), got %d:\n%s", n, logs)
	}
	for _, secret := range []string{"c2VjcmV0LWtleS1ieXRlcw", pemBody(f.first.KeyPEM), pemBody(second.KeyPEM), pemBody(third.KeyPEM), "PRIVATE KEY-----"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain key material %q:\n%s", secret, logs)
		}
	}
	for _, want := range []string{`certificate file \"` + f.cert, `does not match the certificate`, `private key file \"` + f.key + `\": cannot parse the private key`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}

func TestReloadClientCA(t *testing.T) {
	f := start(t, true, interval)
	oldClient := f.ca.Client(t, "envoy-old")
	ca2 := tlstest.NewCA(t, "rotated CA")
	newClient := ca2.Client(t, "envoy-new")
	mustServe(t, f.addr, credentials.NewTLS(f.clientTLS(t, oldClient)), nil)
	mustRefuse(t, "client of the next CA before rotation", f.addr, credentials.NewTLS(f.clientTLS(t, newClient)))

	tlstest.WriteFile(t, f.clientCA, ca2.PEM)
	wait()
	mustServe(t, f.addr, credentials.NewTLS(f.clientTLS(t, newClient)), nil)
	mustRefuse(t, "client of the replaced CA", f.addr, credentials.NewTLS(f.clientTLS(t, oldClient)))

	// A CA file that does not parse keeps the previous pool.
	tlstest.WriteFile(t, f.clientCA, []byte("not a certificate"))
	wait()
	mustServe(t, f.addr, credentials.NewTLS(f.clientTLS(t, newClient)), nil)
	if !strings.Contains(f.logs.String(), `client CA file \"`+f.clientCA+`\": no PEM certificate found`) {
		t.Errorf("logs:\n%s", f.logs)
	}
}

func TestNoReloadBeforeInterval(t *testing.T) {
	f := start(t, false, time.Hour)
	creds := credentials.NewTLS(f.clientTLS(t))
	f.ca.Server(t, "server-2").WriteFiles(t, f.cert, f.key)
	wait()
	mustServe(t, f.addr, creds, f.first.Cert.SerialNumber)
}

func TestConcurrentHandshakesDuringReplacement(t *testing.T) {
	f := start(t, true, time.Millisecond)
	creds := credentials.NewTLS(f.clientTLS(t, f.ca.Client(t, "envoy")))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if _, err := check(t, f.addr, creds); err != nil {
					t.Errorf("Check during replacement: %v", err)
				}
			}
		}()
	}
	for i := range 10 {
		f.ca.Server(t, "server-"+string(rune('a'+i))).WriteFiles(t, f.cert, f.key)
		time.Sleep(2 * time.Millisecond)
	}
	wg.Wait()
}

func TestNewValidates(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	a, b := ca.Server(t, "a"), ca.Server(t, "b")
	path := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		tlstest.WriteFile(t, p, data)
		return p
	}
	certA, keyA, keyB := path("a.crt", a.CertPEM), path("a.key", a.KeyPEM), path("b.key", b.KeyPEM)
	combined := path("combined.pem", append(append([]byte{}, a.CertPEM...), a.KeyPEM...))
	caFile := path("ca.crt", ca.PEM)
	garbage := path("garbage", []byte("hello"))
	encrypted := path("enc.key", []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"))
	missing := filepath.Join(dir, "missing.pem")

	if _, err := New(Files{Cert: certA, Key: keyA, ClientCA: caFile}, Options{}); err != nil {
		t.Errorf("valid files: %v", err)
	}
	if _, err := New(Files{Cert: combined, Key: combined}, Options{}); err != nil {
		t.Errorf("certificate and key in one file: %v", err)
	}
	if _, err := New(Files{Cert: certA, Key: keyA}, Options{ClientIdentities: []string{gatewayID}}); err == nil || !strings.Contains(err.Error(), "client identities need a client CA") {
		t.Errorf("client identities without a client CA: err = %v", err)
	}
	if _, err := New(Files{Cert: certA, Key: keyA, ClientCA: caFile}, Options{ClientIdentities: []string{gatewayID, "*.bad"}}); !errors.Is(err, ErrIdentity) || !strings.Contains(err.Error(), "client identity 2") {
		t.Errorf("a bad client identity: err = %v", err)
	}
	for _, tc := range []struct {
		name  string
		files Files
		want  string
	}{
		{"no key", Files{Cert: certA}, "both required"},
		{"missing cert", Files{Cert: missing, Key: keyA}, `certificate file "` + missing + `": no such file or directory`},
		{"missing key", Files{Cert: certA, Key: missing}, `private key file "` + missing + `": no such file`},
		{"missing CA", Files{Cert: certA, Key: keyA, ClientCA: missing}, `client CA file "` + missing + `"`},
		{"cert not PEM", Files{Cert: garbage, Key: keyA}, `certificate file "` + garbage + `": no PEM certificate found`},
		{"key is a certificate", Files{Cert: certA, Key: certA}, `private key file "` + certA + `": no PEM private key found`},
		{"encrypted key", Files{Cert: certA, Key: encrypted}, "encrypted private keys are not supported"},
		{"key of another certificate", Files{Cert: certA, Key: keyB}, `private key file "` + keyB + `" does not match the certificate in "` + certA + `"`},
		{"CA not PEM", Files{Cert: certA, Key: keyA, ClientCA: garbage}, `client CA file "` + garbage + `": no PEM certificate found`},
		{"CA is a key", Files{Cert: certA, Key: keyA, ClientCA: keyA}, `client CA file "` + keyA + `": no PEM certificate found`},
	} {
		_, err := New(tc.files, Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to contain %q", tc.name, err, tc.want)
			continue
		}
		for _, secret := range []string{pemBody(a.KeyPEM), pemBody(b.KeyPEM)} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: error contains key material", tc.name)
			}
		}
	}
}

// pemBody returns a distinctive piece of a PEM file's base64 body.
func pemBody(p []byte) string {
	lines := strings.Split(string(p), "\n")
	return lines[1][:40]
}

// TestNotAfterFollowsReload: NotAfter reports the certificate a new
// connection would get, picking up a replaced certificate without a
// handshake and keeping the previous one while a new set does not load.
func TestNotAfterFollowsReload(t *testing.T) {
	f := start(t, false, interval)
	r, err := New(Files{Cert: f.cert, Key: f.key}, Options{Interval: interval})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.NotAfter(), f.first.Cert.NotAfter; !got.Equal(want) {
		t.Fatalf("NotAfter %v, want the first certificate's %v", got, want)
	}

	renewed := f.ca.ServerUntil(t, "server-2", f.first.Cert.NotAfter.Add(90*24*time.Hour))
	renewed.WriteFiles(t, f.cert, f.key)
	wait()
	if got, want := r.NotAfter(), renewed.Cert.NotAfter; !got.Equal(want) {
		t.Errorf("after renewal NotAfter %v, want %v", got, want)
	}

	// A certificate without its key yet: the renewed one stays.
	tlstest.WriteFile(t, f.cert, f.ca.ServerUntil(t, "server-3", renewed.Cert.NotAfter.Add(time.Hour)).CertPEM)
	wait()
	if got, want := r.NotAfter(), renewed.Cert.NotAfter; !got.Equal(want) {
		t.Errorf("with a mismatched key NotAfter %v, want the renewed certificate's %v", got, want)
	}
}
