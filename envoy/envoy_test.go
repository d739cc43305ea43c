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
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
)

// validator is implemented by every go-control-plane message
// (protoc-gen-validate).
type validator interface{ ValidateAll() error }

// load reads a YAML bootstrap the way Envoy does: YAML to JSON, then proto3
// JSON with unknown fields refused, every typed_config resolved.
func load(t *testing.T, path string) *bootstrapv3.Bootstrap {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatalf("%s: to JSON: %v", path, err)
	}
	var b bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false, Resolver: protoregistry.GlobalTypes}).Unmarshal(js, &b); err != nil {
		t.Fatalf("%s: not an Envoy v3 bootstrap: %v", path, err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &b
}

// unpacked is an Any found in the configuration, unpacked and validated.
type unpacked struct {
	field string // where it was found
	msg   proto.Message
}

// anys unpacks every google.protobuf.Any under m (typed_config,
// typed_per_filter_config, typed_extension_protocol_options, ...), recursing
// into the unpacked messages, and validates each.
func anys(t *testing.T, m protoreflect.Message, found *[]unpacked) {
	t.Helper()
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{Resolver: protoregistry.GlobalTypes})
		if err != nil {
			t.Fatalf("unpack %s: %v", a.GetTypeUrl(), err)
		}
		v, ok := inner.(validator)
		if !ok {
			t.Fatalf("%s has no ValidateAll", a.GetTypeUrl())
		}
		if err := v.ValidateAll(); err != nil {
			t.Errorf("%s: %v", a.GetTypeUrl(), err)
		}
		*found = append(*found, unpacked{field: a.GetTypeUrl(), msg: inner})
		anys(t, inner.ProtoReflect(), found)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				anys(t, v.List().Get(i).Message(), found)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				anys(t, mv.Message(), found)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			anys(t, v.Message(), found)
		}
		return true
	})
}

func typed[T proto.Message](found []unpacked) []T {
	var out []T
	for _, u := range found {
		if m, ok := u.msg.(T); ok {
			out = append(out, m)
		}
	}
	return out
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
	if !slices.Contains(files, "envoy.yaml") || !slices.Contains(files, "envoy-mtls.yaml") {
		t.Fatalf("expected envoy.yaml and envoy-mtls.yaml, found %v", files)
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
			var found []unpacked
			anys(t, b.ProtoReflect(), &found)
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
func extAuthz(t *testing.T, found []unpacked) *extauthzv3.ExtAuthz {
	t.Helper()
	authz := typed[*extauthzv3.ExtAuthz](found)
	if len(authz) != 1 {
		t.Fatalf("%d ext_authz filters, want 1", len(authz))
	}
	return authz[0]
}

// extauthzCluster returns the cluster the ext_authz filter calls.
func extauthzCluster(t *testing.T, b *bootstrapv3.Bootstrap) *clusterv3.Cluster {
	t.Helper()
	var found []unpacked
	anys(t, b.ProtoReflect(), &found)
	name := extAuthz(t, found).GetGrpcService().GetEnvoyGrpc().GetClusterName()
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c
		}
	}
	t.Fatalf("ext_authz cluster %q is not defined", name)
	return nil
}

func routes(found []unpacked) []*routev3.Route {
	var out []*routev3.Route
	for _, hcm := range typed[*hcmv3.HttpConnectionManager](found) {
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

func checkBootstrap(t *testing.T, b *bootstrapv3.Bootstrap, found []unpacked) {
	t.Helper()
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
	}

	// Listener: one HTTP connection manager, ext_authz before the router,
	// paths normalised (routes select providers and scopes by path).
	hcms := typed[*hcmv3.HttpConnectionManager](found)
	if len(hcms) != 1 {
		t.Fatalf("%d HTTP connection managers, want 1", len(hcms))
	}
	hcm := hcms[0]
	filters := hcm.GetHttpFilters()
	if len(filters) != 2 || filters[0].GetName() != "envoy.filters.http.ext_authz" || filters[1].GetName() != "envoy.filters.http.router" {
		t.Errorf("http_filters must be ext_authz then router, got %v", filters)
	}
	if len(typed[*routerv3.Router](found)) != 1 {
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
	// Check; every other route names its providers.
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

	// ext_authz: gRPC, V3, fail closed with 503, a time-out above a refresh.
	a := extAuthz(t, found)
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
	if a.GetHttpService() != nil || a.GetGrpcService().GetEnvoyGrpc() == nil {
		t.Fatal("ext_authz must call extauthz over gRPC (grpc_service.envoy_grpc): context_extensions exist only there")
	}
	if d := a.GetGrpcService().GetTimeout().AsDuration(); d <= minRefreshTimeout {
		t.Errorf("grpc_service.timeout = %v: must exceed refresh.timeout (%v)", d, minRefreshTimeout)
	}

	// The extauthz cluster: HTTP/2 and actively health-checked over gRPC
	// health, against the Authorization service's status (which turns
	// NOT_SERVING when a replica starts draining).
	c := extauthzCluster(t, b)
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
