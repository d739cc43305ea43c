package deploy_test

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/extauthz/extauthz/config"
)

// root is the repository root, relative to this package.
const root = ".."

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func abs(t *testing.T, path string) string {
	t.Helper()
	p, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// parseConfig parses an extauthz configuration with the given environment,
// as serve would.
func parseConfig(t *testing.T, name string, data []byte, env map[string]string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(data, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return cfg
}

// port returns the port of a host:port listen address.
func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	return n
}

// envoyFacts is what the other deployment files must agree with in an Envoy
// bootstrap. envoy/envoy_test.go validates the bootstraps themselves against
// Envoy's API; this only reads values out of the YAML.
type envoyFacts struct {
	clusters      map[string]socketAddress // cluster name -> its first endpoint
	providers     []string                 // every upstream_providers value on a route
	authzCluster  string                   // the cluster ext_authz calls
	authzTimeout  string                   // its grpc_service.timeout
	listenerPorts []int
}

type socketAddress struct {
	Address   string `yaml:"address"`
	PortValue int    `yaml:"port_value"`
}

func readEnvoy(t *testing.T, path string) envoyFacts {
	t.Helper()
	var doc struct {
		StaticResources struct {
			Listeners []struct {
				Address struct {
					SocketAddress socketAddress `yaml:"socket_address"`
				} `yaml:"address"`
				FilterChains []struct {
					Filters []struct {
						TypedConfig struct {
							RouteConfig struct {
								VirtualHosts []struct {
									Routes []struct {
										TypedPerFilterConfig map[string]struct {
											CheckSettings struct {
												ContextExtensions map[string]string `yaml:"context_extensions"`
											} `yaml:"check_settings"`
										} `yaml:"typed_per_filter_config"`
									} `yaml:"routes"`
								} `yaml:"virtual_hosts"`
							} `yaml:"route_config"`
							HTTPFilters []struct {
								Name        string `yaml:"name"`
								TypedConfig struct {
									GRPCService struct {
										EnvoyGRPC struct {
											ClusterName string `yaml:"cluster_name"`
										} `yaml:"envoy_grpc"`
										Timeout string `yaml:"timeout"`
									} `yaml:"grpc_service"`
								} `yaml:"typed_config"`
							} `yaml:"http_filters"`
						} `yaml:"typed_config"`
					} `yaml:"filters"`
				} `yaml:"filter_chains"`
			} `yaml:"listeners"`
			Clusters []struct {
				Name           string `yaml:"name"`
				LoadAssignment struct {
					Endpoints []struct {
						LBEndpoints []struct {
							Endpoint struct {
								Address struct {
									SocketAddress socketAddress `yaml:"socket_address"`
								} `yaml:"address"`
							} `yaml:"endpoint"`
						} `yaml:"lb_endpoints"`
					} `yaml:"endpoints"`
				} `yaml:"load_assignment"`
			} `yaml:"clusters"`
		} `yaml:"static_resources"`
	}
	if err := yaml.Unmarshal(readFile(t, path), &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	f := envoyFacts{clusters: map[string]socketAddress{}}
	for _, l := range doc.StaticResources.Listeners {
		f.listenerPorts = append(f.listenerPorts, l.Address.SocketAddress.PortValue)
		for _, fc := range l.FilterChains {
			for _, flt := range fc.Filters {
				for _, vh := range flt.TypedConfig.RouteConfig.VirtualHosts {
					for _, r := range vh.Routes {
						if p := r.TypedPerFilterConfig["envoy.filters.http.ext_authz"].CheckSettings.ContextExtensions["upstream_providers"]; p != "" {
							f.providers = append(f.providers, p)
						}
					}
				}
				for _, hf := range flt.TypedConfig.HTTPFilters {
					if hf.Name == "envoy.filters.http.ext_authz" {
						f.authzCluster = hf.TypedConfig.GRPCService.EnvoyGRPC.ClusterName
						f.authzTimeout = hf.TypedConfig.GRPCService.Timeout
					}
				}
			}
		}
	}
	for _, c := range doc.StaticResources.Clusters {
		for _, e := range c.LoadAssignment.Endpoints {
			for _, lb := range e.LBEndpoints {
				if _, ok := f.clusters[c.Name]; !ok {
					f.clusters[c.Name] = lb.Endpoint.Address.SocketAddress
				}
			}
		}
	}
	if f.authzCluster == "" || f.authzTimeout == "" || len(f.providers) == 0 {
		t.Fatalf("%s: no ext_authz filter with a cluster, time-out and per-route providers", path)
	}
	return f
}
