package deploy_test

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestTraefikStatic checks deploy/traefik/traefik.yml, Traefik's static
// configuration, against the keys Traefik documents for it (decoded into a
// mirror of them; unknown keys fail): an entry point, and the file provider
// reading the dynamic configuration where deploy/traefik/README.md mounts it.
// Traefik's own configuration types cannot be had as a module (v3.7 requires
// an unpublished module through a replace directive; v3.6 does not build with
// the OpenTelemetry log API this module requires), so the dynamic
// configuration is likewise decoded into a mirror of its keys
// (internal/proxyconfig's tests); internal/cli's tests check that
// deploy/traefik/dynamic.yml is what proxy-config prints.
func TestTraefikStatic(t *testing.T) {
	var static struct {
		EntryPoints map[string]struct {
			Address string `yaml:"address"`
		} `yaml:"entryPoints"`
		Providers struct {
			File struct {
				Filename string `yaml:"filename"`
				Watch    bool   `yaml:"watch"`
			} `yaml:"file"`
		} `yaml:"providers"`
		Log struct {
			Level string `yaml:"level"`
		} `yaml:"log"`
		AccessLog struct{} `yaml:"accessLog"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(readFile(t, root+"/deploy/traefik/traefik.yml"))))
	dec.KnownFields(true)
	if err := dec.Decode(&static); err != nil {
		t.Fatalf("deploy/traefik/traefik.yml: %v", err)
	}
	if len(static.EntryPoints) != 1 || static.EntryPoints["web"].Address == "" {
		t.Errorf("entry points %v, want one, web", static.EntryPoints)
	}
	if static.Providers.File.Filename != "/etc/traefik/dynamic.yml" {
		t.Errorf("the file provider reads %q, want /etc/traefik/dynamic.yml (deploy/traefik/README.md)", static.Providers.File.Filename)
	}
	readme := string(readFile(t, root+"/deploy/traefik/README.md"))
	if !strings.Contains(readme, "dynamic.yml:/etc/traefik/dynamic.yml") {
		t.Error("deploy/traefik/README.md does not mount dynamic.yml at /etc/traefik/dynamic.yml")
	}
}
