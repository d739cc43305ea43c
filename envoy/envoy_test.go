package envoy_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/httpfront"
	"github.com/extauthz/extauthz/internal/envoyconf"
	"github.com/extauthz/extauthz/internal/proxyconfig"
)

// load reads a bootstrap file the way Envoy does (envoyconf.Bootstrap).
func load(t *testing.T, path string) *bootstrapv3.Bootstrap {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := envoyconf.Bootstrap(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}

// anys returns every Any under m, unpacked and validated.
func anys(t *testing.T, m proto.Message) []proto.Message {
	t.Helper()
	found, err := envoyconf.Unpacked(m)
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// bootstraps returns every Envoy file in this folder: each must be checked.
func bootstraps(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	yml, _ := filepath.Glob("*.yml")
	files = append(files, yml...)
	for _, want := range []string{"envoy.yaml", "envoy-mtls.yaml", "envoy-http.yaml"} {
		if !slices.Contains(files, want) {
			t.Fatalf("expected %s among %v", want, files)
		}
	}
	return files
}

// minRefreshTimeout is extauthz's default refresh.timeout: the ext_authz
// time-out must exceed it, or a Check that refreshes always times out.
const minRefreshTimeout = 10 * time.Second

// providerList is the syntax of context_extensions["upstream_providers"]:
// comma-separated provider names (config: letters, digits, '-' and '_').
var providerList = regexp.MustCompile(`^[A-Za-z0-9_-]+(,[A-Za-z0-9_-]+)*$`)

// TestBootstraps loads every Envoy file here and checks what every one of
// them must get right to work with extauthz.
func TestBootstraps(t *testing.T) {
	for _, file := range bootstraps(t) {
		t.Run(file, func(t *testing.T) {
			b := load(t, file)
			found := anys(t, b)
			checkBootstrap(t, b, found)
			switch file {
			case "envoy-mtls.yaml":
				checkMTLS(t, b)
			case "envoy.yaml":
				// The compose stack's variant: plaintext on the compose network
				// (extauthz without listen.tls), and a route that needs scopes.
				if ts := extauthzCluster(t, b).GetTransportSocket(); ts != nil {
					t.Errorf("envoy.yaml's extauthz cluster has a transport socket %q: the TLS variant is envoy-mtls.yaml", ts.GetName())
				}
				var scoped bool
				for _, r := range routes(found) {
					if perRoute(t, r).GetCheckSettings().GetContextExtensions()["required_scopes"] != "" {
						scoped = true
					}
				}
				if !scoped {
					t.Error("no route sets context_extensions.required_scopes")
				}
			}
		})
	}
}

// extAuthz returns the bootstrap's one ext_authz filter.
func extAuthz(t *testing.T, found []proto.Message) *extauthzv3.ExtAuthz {
	t.Helper()
	authz := envoyconf.Typed[*extauthzv3.ExtAuthz](found)
	if len(authz) != 1 {
		t.Fatalf("%d ext_authz filters, want 1", len(authz))
	}
	return authz[0]
}

// extauthzCluster returns the cluster the ext_authz filter calls.
func extauthzCluster(t *testing.T, b *bootstrapv3.Bootstrap) *clusterv3.Cluster {
	t.Helper()
	found := anys(t, b)
	a := extAuthz(t, found)
	name := a.GetGrpcService().GetEnvoyGrpc().GetClusterName()
	if a.GetHttpService() != nil {
		name = a.GetHttpService().GetServerUri().GetCluster()
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c
		}
	}
	t.Fatalf("ext_authz cluster %q is not defined", name)
	return nil
}

func routes(found []proto.Message) []*routev3.Route {
	var out []*routev3.Route
	for _, hcm := range envoyconf.Typed[*hcmv3.HttpConnectionManager](found) {
		for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
			out = append(out, vh.GetRoutes()...)
		}
	}
	return out
}

// perRoute returns a route's ExtAuthzPerRoute, or nil.
func perRoute(t *testing.T, r *routev3.Route) *extauthzv3.ExtAuthzPerRoute {
	t.Helper()
	a, ok := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"]
	if !ok {
		return nil
	}
	var pr extauthzv3.ExtAuthzPerRoute
	if err := a.UnmarshalTo(&pr); err != nil {
		t.Fatalf("route %v: ext_authz per-route config: %v", r.GetMatch(), err)
	}
	return &pr
}

func checkBootstrap(t *testing.T, b *bootstrapv3.Bootstrap, found []proto.Message) {
	t.Helper()
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
	}

	// Listener: one HTTP connection manager, ext_authz before the router,
	// paths normalised (routes select providers and scopes by path).
	hcms := envoyconf.Typed[*hcmv3.HttpConnectionManager](found)
	if len(hcms) != 1 {
		t.Fatalf("%d HTTP connection managers, want 1", len(hcms))
	}
	hcm := hcms[0]
	filters := hcm.GetHttpFilters()
	if len(filters) != 2 || filters[0].GetName() != "envoy.filters.http.ext_authz" || filters[1].GetName() != "envoy.filters.http.router" {
		t.Errorf("http_filters must be ext_authz then router, got %v", filters)
	}
	if len(envoyconf.Typed[*routerv3.Router](found)) != 1 {
		t.Error("no typed router filter")
	}
	if !hcm.GetNormalizePath().GetValue() || !hcm.GetMergeSlashes() {
		t.Error("normalize_path and merge_slashes must be on: routes choose providers and required scopes by path")
	}
	if a := hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction(); a != corev3.HttpProtocolOptions_REJECT_REQUEST {
		t.Errorf("common_http_protocol_options.headers_with_underscores_action = %v, want REJECT_REQUEST: a client's x_google_access_token would reach backends that fold '_' into '-'", a)
	}
	switch hcm.GetPathWithEscapedSlashesAction() {
	case hcmv3.HttpConnectionManager_REJECT_REQUEST, hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT:
	default:
		t.Errorf("path_with_escaped_slashes_action = %v: an encoded slash would reach another route than the backend sees", hcm.GetPathWithEscapedSlashesAction())
	}

	// Routes: every one to a defined cluster; a health route without the
	// Check; over gRPC every other route names its providers, over HTTP
	// none does (context_extensions do not reach an http_service: a route
	// that set them would believe in a policy that is not applied).
	a := extAuthz(t, found)
	overHTTP := a.GetHttpService() != nil
	var health bool
	for _, r := range routes(found) {
		if c := r.GetRoute().GetCluster(); clusters[c] == nil {
			t.Errorf("route %v goes to undefined cluster %q", r.GetMatch(), c)
		}
		pr := perRoute(t, r)
		if pr.GetDisabled() {
			if r.GetMatch().GetPath() != "/healthz" {
				t.Errorf("route %v skips ext_authz: only the /healthz route may", r.GetMatch())
			}
			health = true
			continue
		}
		ext := pr.GetCheckSettings().GetContextExtensions()
		if overHTTP {
			if len(ext) > 0 {
				t.Errorf("route %v sets context_extensions, which an http_service never receives: use extauthz's routes", r.GetMatch())
			}
			continue
		}
		if p := ext["upstream_providers"]; !providerList.MatchString(p) {
			t.Errorf("route %v: context_extensions.upstream_providers = %q, want comma-separated provider names", r.GetMatch(), p)
		}
		if s, ok := ext["required_scopes"]; ok && len(strings.Fields(s)) == 0 {
			t.Errorf("route %v: required_scopes is empty", r.GetMatch())
		}
		for k := range ext {
			if k != "upstream_providers" && k != "required_scopes" {
				t.Errorf("route %v: context_extensions key %q means nothing to extauthz", r.GetMatch(), k)
			}
		}
	}
	if !health {
		t.Error("no /healthz route with ext_authz disabled")
	}

	// ext_authz: V3, fail closed with 503.
	if a.GetFailureModeAllow() {
		t.Error("failure_mode_allow must be false")
	}
	if a.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		t.Errorf("transport_api_version = %v", a.GetTransportApiVersion())
	}
	if a.GetStatusOnError().GetCode() != 503 {
		t.Errorf("status_on_error = %v, want 503", a.GetStatusOnError())
	}
	if a.GetIncludePeerCertificate() {
		t.Error("include_peer_certificate must be false: extauthz does not read it")
	}
	if a.GetWithRequestBody() != nil {
		t.Error("with_request_body must be unset: extauthz reads no body")
	}
	if overHTTP {
		checkHTTPService(t, a)
	} else {
		checkGRPCService(t, a, extauthzCluster(t, b))
	}
}

// checkGRPCService checks the ext_authz filter over gRPC and its cluster:
// a time-out above a refresh; HTTP/2, actively health-checked over gRPC
// health against the Authorization service's status (which turns
// NOT_SERVING when a replica starts draining).
func checkGRPCService(t *testing.T, a *extauthzv3.ExtAuthz, c *clusterv3.Cluster) {
	t.Helper()
	if a.GetHttpService() != nil || a.GetGrpcService().GetEnvoyGrpc() == nil {
		t.Fatal("ext_authz must call extauthz over gRPC (grpc_service.envoy_grpc)")
	}
	if d := a.GetGrpcService().GetTimeout().AsDuration(); d <= minRefreshTimeout {
		t.Errorf("grpc_service.timeout = %v: must exceed refresh.timeout (%v)", d, minRefreshTimeout)
	}
	var http2 bool
	for _, opt := range c.GetTypedExtensionProtocolOptions() {
		var po httpv3.HttpProtocolOptions
		if opt.UnmarshalTo(&po) == nil && po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil {
			http2 = true
		}
	}
	if !http2 {
		t.Error("the extauthz cluster must speak HTTP/2 (explicit_http_config.http2_protocol_options)")
	}
	var grpcHealth bool
	for _, hc := range c.GetHealthChecks() {
		if hc.GetGrpcHealthCheck().GetServiceName() == "envoy.service.auth.v3.Authorization" {
			grpcHealth = true
		}
	}
	if !grpcHealth {
		t.Error("the extauthz cluster needs a grpc_health_check with service_name envoy.service.auth.v3.Authorization")
	}
}

// checkHTTPService checks the ext_authz filter over HTTP against what
// extauthz's HTTP front and the configuration it is generated for need.
func checkHTTPService(t *testing.T, a *extauthzv3.ExtAuthz) {
	t.Helper()
	hs := a.GetHttpService()
	if hs.GetPathPrefix() != httpfront.PathEnvoy || hs.GetPathOverride() != "" {
		t.Errorf("http_service: path_prefix %q, path_override %q; want path_prefix %q: extauthz reads the original path after it",
			hs.GetPathPrefix(), hs.GetPathOverride(), httpfront.PathEnvoy)
	}
	if d := hs.GetServerUri().GetTimeout().AsDuration(); d <= minRefreshTimeout {
		t.Errorf("http_service.server_uri.timeout = %v: must exceed refresh.timeout (%v)", d, minRefreshTimeout)
	}
	matches := func(field string, list *matcherv3.ListStringMatcher, name string) bool {
		ok, err := envoyconf.Matches(list, name)
		if err != nil {
			t.Fatalf("%s: %v", field, err)
		}
		return ok
	}
	if !matches("allowed_headers", a.GetAllowedHeaders(), "authorization") {
		t.Error("allowed_headers must name authorization, the caller's JWT")
	}
	for _, h := range proxyconfig.ReadHeaders {
		h = strings.ToLower(h)
		if !matches("disallowed_headers", a.GetDisallowedHeaders(), h) {
			t.Errorf("disallowed_headers must name %s: a client's copy must never reach extauthz", h)
		}
		if matches("allowed_headers", a.GetAllowedHeaders(), h) {
			t.Errorf("allowed_headers names %s: a client would choose its own policy", h)
		}
	}
	resp := hs.GetAuthorizationResponse()
	for _, h := range generatedFor(t).Authz().HeaderNames() {
		if !matches("allowed_upstream_headers", resp.GetAllowedUpstreamHeaders(), h) {
			t.Errorf("allowed_upstream_headers lacks %s: Envoy would drop it from the answer", h)
		}
	}
	if resp.GetAllowedUpstreamHeadersToAppend() != nil {
		t.Error("allowed_upstream_headers_to_append must be unset: a credential is set, never appended to the client's")
	}
	for _, h := range proxyconfig.EnvoyClientHeaders {
		if !matches("allowed_client_headers", resp.GetAllowedClientHeaders(), h) {
			t.Errorf("allowed_client_headers lacks %s: a deny would reach the client without it", h)
		}
	}
}

// generatedFromConfig is the extauthz configuration envoy-http.yaml is
// generated for.
const generatedFromConfig = "testdata/extauthz-http.yaml"

func generatedFor(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Load(generatedFromConfig, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func checkMTLS(t *testing.T, b *bootstrapv3.Bootstrap) {
	t.Helper()
	c := extauthzCluster(t, b)
	var tlsCtx tlsv3.UpstreamTlsContext
	if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(&tlsCtx); err != nil {
		t.Fatalf("the extauthz cluster has no UpstreamTlsContext: %v", err)
	}
	common := tlsCtx.GetCommonTlsContext()
	if len(common.GetTlsCertificates()) != 1 || common.GetTlsCertificates()[0].GetCertificateChain().GetFilename() == "" ||
		common.GetTlsCertificates()[0].GetPrivateKey().GetFilename() == "" {
		t.Errorf("Envoy must present a client certificate: %v", common.GetTlsCertificates())
	}
	if common.GetValidationContext().GetTrustedCa().GetFilename() == "" {
		t.Error("Envoy must verify extauthz's certificate against a trusted CA")
	}
	if len(common.GetValidationContext().GetMatchTypedSubjectAltNames()) == 0 {
		t.Error("Envoy must check extauthz's subject alternative name")
	}
	if !slices.Contains(common.GetAlpnProtocols(), "h2") {
		t.Error("alpn_protocols must offer h2: gRPC servers refuse TLS without ALPN")
	}
	if v := common.GetTlsParams().GetTlsMinimumProtocolVersion(); v != tlsv3.TlsParameters_TLSv1_2 && v != tlsv3.TlsParameters_TLSv1_3 {
		t.Errorf("tls_minimum_protocol_version = %v", v)
	}
}

// TestMTLSAgreesWithPlain checks that envoy-mtls.yaml is envoy.yaml plus TLS
// to extauthz: the same listener, routes, filters and clusters, so that a
// fix to one cannot be forgotten in the other.
func TestMTLSAgreesWithPlain(t *testing.T) {
	plain := load(t, "envoy.yaml")
	mtls := load(t, "envoy-mtls.yaml")
	if extauthzCluster(t, mtls).GetTransportSocket() == nil {
		t.Fatal("envoy-mtls.yaml: the extauthz cluster has no transport socket")
	}
	extauthzCluster(t, mtls).TransportSocket = nil
	var diffs []string
	diff(canonical(t, plain), canonical(t, mtls), "", &diffs)
	for _, d := range diffs {
		t.Errorf("envoy-mtls.yaml differs from envoy.yaml beyond the extauthz cluster's TLS: %s", d)
	}
}

// diff lists the JSON paths at which a and b differ.
func diff(a, b any, path string, out *[]string) {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			break
		}
		keys := map[string]bool{}
		for k := range av {
			keys[k] = true
		}
		for k := range bv {
			keys[k] = true
		}
		for _, k := range slices.Sorted(maps.Keys(keys)) {
			diff(av[k], bv[k], path+"."+k, out)
		}
		return
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			break
		}
		for i := range av {
			diff(av[i], bv[i], fmt.Sprintf("%s[%d]", path, i), out)
		}
		return
	}
	if !reflect.DeepEqual(a, b) {
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		*out = append(*out, fmt.Sprintf("%s: %s vs %s", path, ja, jb))
	}
}

// canonical renders m as a generic JSON tree, Anys expanded, so that two
// configurations compare by meaning (map order and Any bytes aside).
func canonical(t *testing.T, m proto.Message) any {
	t.Helper()
	js, err := protojson.MarshalOptions{Resolver: protoregistry.GlobalTypes}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(js, &v); err != nil {
		t.Fatal(err)
	}
	return v
}
