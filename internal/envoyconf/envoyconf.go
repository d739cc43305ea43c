// Package envoyconf reads Envoy v3 configuration as Envoy does, with
// go-control-plane's types: the shipped bootstraps, the fragments that
// "extauthz proxy-config envoy-http" prints, and the tests that act out
// what Envoy does with them.
package envoyconf

import (
	"encoding/json"
	"fmt"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	// Every type a typed_config may name must be registered.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// validator is implemented by every go-control-plane message
// (protoc-gen-validate).
type validator interface{ ValidateAll() error }

// Bootstrap reads a YAML (or JSON) bootstrap the way Envoy does: YAML to
// JSON, then proto3 JSON with unknown fields refused and every typed_config
// resolved, then validated.
func Bootstrap(data []byte) (*bootstrapv3.Bootstrap, error) {
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("to JSON: %w", err)
	}
	var b bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{Resolver: protoregistry.GlobalTypes}).Unmarshal(js, &b); err != nil {
		return nil, fmt.Errorf("not an Envoy v3 bootstrap: %w", err)
	}
	if err := b.ValidateAll(); err != nil {
		return nil, err
	}
	return &b, nil
}

// Unpacked returns every google.protobuf.Any under m (typed_config,
// typed_per_filter_config, typed_extension_protocol_options, ...),
// unpacked, recursing into the unpacked messages. It fails on an Any that
// does not unpack or whose message is invalid.
func Unpacked(m proto.Message) ([]proto.Message, error) {
	var found []proto.Message
	err := unpack(m.ProtoReflect(), &found)
	return found, err
}

func unpack(m protoreflect.Message, found *[]proto.Message) error {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{Resolver: protoregistry.GlobalTypes})
		if err != nil {
			return fmt.Errorf("unpack %s: %w", a.GetTypeUrl(), err)
		}
		v, ok := inner.(validator)
		if !ok {
			return fmt.Errorf("%s has no ValidateAll", a.GetTypeUrl())
		}
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
		}
		*found = append(*found, inner)
		return unpack(inner.ProtoReflect(), found)
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len() && err == nil; i++ {
				err = unpack(v.List().Get(i).Message(), found)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				err = unpack(mv.Message(), found)
				return err == nil
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			err = unpack(v.Message(), found)
		}
		return err == nil
	})
	return err
}

// Typed returns the messages of type T among found.
func Typed[T proto.Message](found []proto.Message) []T {
	var out []T
	for _, m := range found {
		if t, ok := m.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// Matches reports whether s matches any pattern of list as Envoy's string
// matchers do (exact, prefix, suffix, contains, each with ignore_case). A
// nil list matches nothing. A pattern of another kind (safe_regex, custom)
// is an error: a caller must not guess what Envoy would do.
func Matches(list *matcherv3.ListStringMatcher, s string) (bool, error) {
	for _, p := range list.GetPatterns() {
		fold := func(x string) string { return x }
		if p.GetIgnoreCase() {
			fold = strings.ToLower
		}
		v := fold(s)
		var ok bool
		switch m := p.GetMatchPattern().(type) {
		case *matcherv3.StringMatcher_Exact:
			ok = v == fold(m.Exact)
		case *matcherv3.StringMatcher_Prefix:
			ok = strings.HasPrefix(v, fold(m.Prefix))
		case *matcherv3.StringMatcher_Suffix:
			ok = strings.HasSuffix(v, fold(m.Suffix))
		case *matcherv3.StringMatcher_Contains:
			ok = strings.Contains(v, fold(m.Contains))
		default:
			return false, fmt.Errorf("string matcher %v: only exact, prefix, suffix and contains are understood", p)
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}
