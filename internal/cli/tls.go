package cli

import (
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/internal/tlsreload"
	"github.com/extauthz/extauthz/telemetry"
)

// tlsCerts holds the reloader of each listener that serves TLS, by the
// listener's name (one of telemetry.TLSListeners), so that serve exports
// the expiry of each certificate once its metrics exist.
type tlsCerts map[string]*tlsreload.Reloader

// export registers the certificate expiry gauge of every listener in c.
func (c tlsCerts) export(m *telemetry.Metrics) error {
	for listener, r := range c {
		if err := m.WatchCertificate(listener, r.NotAfter); err != nil {
			return err
		}
	}
	return nil
}

// grpcTLS returns the gRPC server options for listen.tls: TLS credentials
// (mTLS when client_ca is set, restricted to client_identities when those
// are set) from files reloaded when they change, or none when no certificate
// is configured, leaving the listener plaintext for a sidecar on localhost.
// A file that does not load is a usage error. The reloader goes into certs.
func grpcTLS(cfg config.TLS, log *slog.Logger, certs tlsCerts) ([]grpc.ServerOption, error) {
	c, err := listenerTLS("grpc", "listen.tls", "gRPC", cfg, log, certs)
	if c == nil || err != nil {
		return nil, err
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(c))}, nil
}
