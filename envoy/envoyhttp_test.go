package envoy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"

	"github.com/extauthz/extauthz/internal/cli"
	"github.com/extauthz/extauthz/internal/envoyconf"
	"github.com/extauthz/extauthz/internal/proxyconfig"
)

// wrap places a fragment printed by proxy-config envoy-http (its
// http_filters and clusters) into a minimal bootstrap, the router after its
// filters, reads it as Envoy does and returns it with its unpacked Anys.
func wrap(t *testing.T, fragment string) (*bootstrapv3.Bootstrap, []proto.Message) {
	t.Helper()
	var f struct {
		Filters  []any `yaml:"http_filters"`
		Clusters []any `yaml:"clusters"`
	}
	if err := yaml.Unmarshal([]byte(fragment), &f); err != nil {
		t.Fatalf("not YAML: %v\n%s", err, fragment)
	}
	if len(f.Filters) != 1 || len(f.Clusters) != 1 {
		t.Fatalf("%d filters and %d clusters, want one of each:\n%s", len(f.Filters), len(f.Clusters), fragment)
	}
	router := map[string]any{"name": "envoy.filters.http.router", "typed_config": map[string]any{
		"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
	hcm := map[string]any{
		"@type":       "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
		"stat_prefix": "ingress",
		"route_config": map[string]any{"name": "local", "virtual_hosts": []any{map[string]any{
			"name": "api", "domains": []any{"*"},
			"routes": []any{map[string]any{"match": map[string]any{"prefix": "/"}, "route": map[string]any{"cluster": proxyconfig.EnvoyCluster}}},
		}}},
		"http_filters": append(f.Filters, router),
	}
	doc := map[string]any{"static_resources": map[string]any{
		"listeners": []any{map[string]any{
			"name":    "ingress",
			"address": map[string]any{"socket_address": map[string]any{"address": "127.0.0.1", "port_value": 8080}},
			"filter_chains": []any{map[string]any{"filters": []any{map[string]any{
				"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}}}},
		}},
		"clusters": f.Clusters,
	}}
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	b, err := envoyconf.Bootstrap(js)
	if err != nil {
		t.Fatalf("the printed fragment, wrapped in a bootstrap: %v\n%s", err, fragment)
	}
	return b, anys(t, b)
}

// filterAndCluster returns the ext_authz filter and the cluster it calls.
func filterAndCluster(t *testing.T, b *bootstrapv3.Bootstrap, found []proto.Message) (*extauthzv3.ExtAuthz, *clusterv3.Cluster) {
	t.Helper()
	return extAuthz(t, found), extauthzCluster(t, b)
}

// TestEnvoyHTTPIsGenerated: envoy-http.yaml's ext_authz filter and extauthz
// cluster are what "extauthz proxy-config envoy-http" prints for the
// configuration they are generated for, and the printed fragment is valid
// Envoy configuration.
func TestEnvoyHTTPIsGenerated(t *testing.T) {
	var out, errs bytes.Buffer
	code := cli.Run(context.Background(), []string{"proxy-config", "envoy-http", "--config", generatedFromConfig},
		cli.Env{Stdout: &out, Stderr: &errs, Getenv: func(string) string { return "" }})
	if code != cli.ExitOK {
		t.Fatalf("proxy-config envoy-http: exit %d: %s", code, errs.String())
	}
	printed, found := wrap(t, out.String())
	printedFilter, printedCluster := filterAndCluster(t, printed, found)
	shipped := load(t, "envoy-http.yaml")
	shippedFilter, shippedCluster := filterAndCluster(t, shipped, anys(t, shipped))
	for _, pair := range []struct {
		what             string
		shipped, printed proto.Message
	}{{"ext_authz filter", shippedFilter, printedFilter}, {proxyconfig.EnvoyCluster + " cluster", shippedCluster, printedCluster}} {
		var diffs []string
		diff(canonical(t, pair.shipped), canonical(t, pair.printed), "", &diffs)
		for _, d := range diffs {
			t.Errorf("envoy-http.yaml's %s is not what proxy-config envoy-http prints: %s (shipped vs printed)", pair.what, d)
		}
	}
}

// TestEnvoyHTTPVariants: what proxy-config envoy-http prints for a Unix
// socket and for TLS is valid Envoy configuration with the expected
// cluster.
func TestEnvoyHTTPVariants(t *testing.T) {
	headers := []string{"authorization", "x-google-token"}
	for _, tc := range []struct {
		name  string
		in    proxyconfig.EnvoyHTTP
		check func(t *testing.T, c *clusterv3.Cluster)
	}{
		{"unix socket", proxyconfig.EnvoyHTTP{Network: "unix", Addr: "/run/extauthz/http.sock"}, func(t *testing.T, c *clusterv3.Cluster) {
			addr := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress()
			if addr.GetPipe().GetPath() != "/run/extauthz/http.sock" || c.GetType() != clusterv3.Cluster_STATIC {
				t.Errorf("cluster %v", c)
			}
		}},
		{"loopback", proxyconfig.EnvoyHTTP{Network: "tcp", Addr: ":9002"}, func(t *testing.T, c *clusterv3.Cluster) {
			addr := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
			if addr.GetAddress() != "127.0.0.1" || addr.GetPortValue() != 9002 || c.GetType() != clusterv3.Cluster_STATIC || c.GetTransportSocket() != nil {
				t.Errorf("cluster %v", c)
			}
		}},
		{"mutual TLS by name", proxyconfig.EnvoyHTTP{Network: "tcp", Addr: "extauthz.internal:9002", TLS: true, ClientCert: true}, func(t *testing.T, c *clusterv3.Cluster) {
			var tc tlsv3.UpstreamTlsContext
			if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(&tc); err != nil {
				t.Fatalf("no UpstreamTlsContext: %v", err)
			}
			common := tc.GetCommonTlsContext()
			sans := common.GetValidationContext().GetMatchTypedSubjectAltNames()
			if c.GetType() != clusterv3.Cluster_STRICT_DNS || tc.GetSni() != "extauthz.internal" || len(common.GetTlsCertificates()) != 1 ||
				common.GetValidationContext().GetTrustedCa().GetFilename() == "" || len(sans) != 1 || sans[0].GetMatcher().GetExact() != "extauthz.internal" {
				t.Errorf("cluster %v", c)
			}
		}},
		{"TLS by address", proxyconfig.EnvoyHTTP{Network: "tcp", Addr: "10.0.0.7:9002", TLS: true}, func(t *testing.T, c *clusterv3.Cluster) {
			var tc tlsv3.UpstreamTlsContext
			if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(&tc); err != nil {
				t.Fatalf("no UpstreamTlsContext: %v", err)
			}
			if len(tc.GetCommonTlsContext().GetTlsCertificates()) != 0 || tc.GetCommonTlsContext().GetValidationContext().GetTrustedCa() == nil {
				t.Errorf("cluster %v", c)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Headers, tc.in.Timeout = headers, 12*time.Second
			out, err := tc.in.Config()
			if err != nil {
				t.Fatal(err)
			}
			b, found := wrap(t, out)
			a, c := filterAndCluster(t, b, found)
			if got := a.GetHttpService().GetServerUri().GetTimeout().AsDuration(); got != 12*time.Second {
				t.Errorf("timeout %v", got)
			}
			tc.check(t, c)
		})
	}
}
