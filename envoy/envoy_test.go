package envoy_test

import (
	"encoding/json"
	"os"
	"slices"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
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

func TestMTLSBootstrap(t *testing.T) {
	b := load(t, "envoy-mtls.yaml")
	var found []unpacked
	anys(t, b.ProtoReflect(), &found)

	clusters := map[string]bool{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = true
	}

	// Listener: one HTTP connection manager, ext_authz before the router,
	// every route to a defined cluster.
	hcms := typed[*hcmv3.HttpConnectionManager](found)
	if len(hcms) != 1 {
		t.Fatalf("%d HTTP connection managers, want 1", len(hcms))
	}
	filters := hcms[0].GetHttpFilters()
	if len(filters) != 2 || filters[0].GetName() != "envoy.filters.http.ext_authz" || filters[1].GetName() != "envoy.filters.http.router" {
		t.Errorf("http_filters must be ext_authz then router, got %v", filters)
	}
	if len(typed[*routerv3.Router](found)) != 1 {
		t.Error("no typed router filter")
	}
	for _, vh := range hcms[0].GetRouteConfig().GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if c := r.GetRoute().GetCluster(); !clusters[c] {
				t.Errorf("route %v goes to undefined cluster %q", r.GetMatch(), c)
			}
		}
	}
	if len(typed[*extauthzv3.ExtAuthzPerRoute](found)) == 0 {
		t.Error("no per-route ext_authz settings (context_extensions)")
	}

	// ext_authz: gRPC, V3, fail closed with 503, explicit time-out.
	authz := typed[*extauthzv3.ExtAuthz](found)
	if len(authz) != 1 {
		t.Fatalf("%d ext_authz filters, want 1", len(authz))
	}
	a := authz[0]
	if a.GetFailureModeAllow() {
		t.Error("failure_mode_allow must be false")
	}
	if a.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		t.Errorf("transport_api_version = %v", a.GetTransportApiVersion())
	}
	if a.GetStatusOnError().GetCode() != 503 {
		t.Errorf("status_on_error = %v, want 503", a.GetStatusOnError())
	}
	if d := a.GetGrpcService().GetTimeout().AsDuration(); d.Seconds() < 1 {
		t.Errorf("grpc_service.timeout = %v: too short for a refresh", d)
	}
	name := a.GetGrpcService().GetEnvoyGrpc().GetClusterName()
	if !clusters[name] {
		t.Fatalf("ext_authz cluster %q is not defined (clusters: %v)", name, clusters)
	}

	// The extauthz cluster: HTTP/2, mutual TLS.
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() != name {
			continue
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
		if !slices.Contains(common.GetAlpnProtocols(), "h2") {
			t.Error("alpn_protocols must offer h2: gRPC servers refuse TLS without ALPN")
		}
		if v := common.GetTlsParams().GetTlsMinimumProtocolVersion(); v != tlsv3.TlsParameters_TLSv1_2 && v != tlsv3.TlsParameters_TLSv1_3 {
			t.Errorf("tls_minimum_protocol_version = %v", v)
		}
	}
}
