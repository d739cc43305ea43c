package deploy_test

import (
	"context"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// loadCompose loads docker-compose.yaml the way `docker compose` does:
// schema-validated (unknown keys fail), interpolated from env (defaults in
// the file apply to what env leaves unset), paths resolved against the
// repository root, with the services of the given profiles enabled.
func loadCompose(t *testing.T, env map[string]string, profiles ...string) *types.Project {
	t.Helper()
	dir := abs(t, root)
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "docker-compose.yaml")}},
		Environment: types.Mapping(env),
	}, func(o *loader.Options) { o.ResolvePaths, o.Profiles = true, profiles })
	if err != nil {
		t.Fatalf("docker-compose.yaml: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("docker-compose.yaml: %v", err)
	}
	return s
}

// environment flattens a service's environment (as interpolated).
func environment(s types.ServiceConfig) map[string]string {
	env := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	return env
}

// flag returns the value after name in a command line ("" if absent).
func flag(cmd []string, name string) string {
	i := slices.Index(cmd, name)
	if i < 0 || i+1 >= len(cmd) {
		return ""
	}
	return cmd[i+1]
}

// bindSource returns the host path bind-mounted read-only at target.
func bindSource(t *testing.T, s types.ServiceConfig, target string) string {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Target == target {
			if v.Type != types.VolumeTypeBind || !v.ReadOnly {
				t.Errorf("service %s: %s must be a read-only bind mount", s.Name, target)
			}
			return v.Source
		}
	}
	t.Fatalf("service %s mounts nothing at %s", s.Name, target)
	return ""
}

func dependsOn(t *testing.T, s types.ServiceConfig, on, condition string) {
	t.Helper()
	d, ok := s.DependsOn[on]
	if !ok {
		t.Errorf("service %s must depend on %s (%s)", s.Name, on, condition)
		return
	}
	if d.Condition != condition {
		t.Errorf("service %s depends on %s with condition %q, want %q", s.Name, on, d.Condition, condition)
	}
}

func TestCompose(t *testing.T) {
	p := loadCompose(t, nil)

	// Without a profile, the proxy variants stay off.
	want := []string{"backend", "demo", "envoy", "extauthz", "migrate", "postgres", "seed"}
	if got := p.ServiceNames(); !slices.Equal(slices.Sorted(slices.Values(got)), want) {
		t.Errorf("services = %v, want %v", got, want)
	}

	// Images: third-party ones pinned to a version; ours built from the
	// Dockerfile at the root.
	for _, s := range p.Services {
		if s.Build != nil {
			if s.Build.Context != abs(t, root) || (s.Build.Dockerfile != "" && s.Build.Dockerfile != "Dockerfile") {
				t.Errorf("service %s builds %s/%s, want the repository's Dockerfile", s.Name, s.Build.Context, s.Build.Dockerfile)
			}
			continue
		}
		_, tag, ok := strings.Cut(s.Image[strings.LastIndex(s.Image, "/")+1:], ":")
		if !ok || tag == "latest" || !strings.ContainsAny(tag, "0123456789") {
			t.Errorf("service %s: image %q is not pinned to a version", s.Name, s.Image)
		}
	}

	// PostgreSQL: health-checked with pg_isready; the migration waits for it.
	pg := service(t, p, "postgres")
	if pg.HealthCheck == nil || !slices.ContainsFunc(pg.HealthCheck.Test, func(s string) bool { return strings.Contains(s, "pg_isready") }) {
		t.Errorf("postgres needs a pg_isready health check, got %+v", pg.HealthCheck)
	}
	migrate := service(t, p, "migrate")
	dependsOn(t, migrate, "postgres", types.ServiceConditionHealthy)
	if len(migrate.Command) == 0 || migrate.Command[0] != "migrate" {
		t.Errorf("migrate runs %v, want extauthz migrate", migrate.Command)
	}

	// extauthz serves the mounted configuration once the schema exists.
	ea := service(t, p, "extauthz")
	dependsOn(t, ea, "migrate", types.ServiceConditionCompletedSuccessfully)
	if len(ea.Command) == 0 || ea.Command[0] != "serve" {
		t.Fatalf("extauthz runs %v, want serve", ea.Command)
	}
	cfgPath := flag(ea.Command, "--config")
	src := bindSource(t, ea, cfgPath)
	if src != abs(t, filepath.Join(root, "deploy/compose/extauthz.yaml")) {
		t.Errorf("extauthz's configuration is %s, want deploy/compose/extauthz.yaml", src)
	}
	cfg := parseConfig(t, src, readFile(t, src), environment(ea))
	if ea.HealthCheck != nil && !ea.HealthCheck.Disable {
		t.Errorf("extauthz has a compose health check %v: its distroless image has no shell or curl to run one", ea.HealthCheck.Test)
	}
	if ea.StopGracePeriod == nil || time.Duration(*ea.StopGracePeriod) <= cfg.Shutdown.DrainDelay.D()+cfg.Shutdown.Timeout.D() {
		t.Errorf("extauthz stop_grace_period %v must exceed shutdown.drain_delay + shutdown.timeout (%v)", ea.StopGracePeriod, cfg.Shutdown.DrainDelay.D()+cfg.Shutdown.Timeout.D())
	}

	// The services sharing the database and the keys read the same
	// configuration with the same secrets.
	seed := service(t, p, "seed")
	dependsOn(t, seed, "migrate", types.ServiceConditionCompletedSuccessfully)
	if len(seed.Command) < 2 || seed.Command[0] != "tokens" || seed.Command[1] != "put" {
		t.Fatalf("seed runs %v, want extauthz tokens put", seed.Command)
	}
	if flag(seed.Command, "--config") != cfgPath || bindSource(t, seed, cfgPath) != src {
		t.Errorf("seed must read extauthz's configuration (%s)", cfgPath)
	}
	for k, v := range environment(ea) {
		if environment(seed)[k] != v || environment(migrate)[k] != v {
			t.Errorf("seed, migrate and extauthz disagree on %s", k)
		}
	}
	if !slices.Contains(cfg.DefaultProviders, flag(seed.Command, "--provider")) {
		t.Errorf("seed stores provider %q, which no route of the demo uses", flag(seed.Command, "--provider"))
	}
	if _, err := time.Parse(time.RFC3339, flag(seed.Command, "--expires-at")); err != nil {
		t.Errorf("seed --expires-at: %v", err)
	}

	// The demo authorization server: extauthz trusts its issuer and keys and
	// refreshes at its token endpoint; its JWTs are bound to the session the
	// seed stores.
	demo := service(t, p, "demo")
	if len(demo.Command) == 0 || demo.Command[0] != "demo" {
		t.Fatalf("demo runs %v, want extauthz demo", demo.Command)
	}
	demoPort := port(t, flag(demo.Command, "--listen"))
	demoBase := "http://demo:" + strconv.Itoa(demoPort)
	if got := flag(demo.Command, "--issuer"); got != cfg.JWT.Issuer || got != demoBase {
		t.Errorf("demo --issuer %q, config jwt.issuer %q, want both %q", got, cfg.JWT.Issuer, demoBase)
	}
	if !slices.Contains(cfg.JWT.Audiences, flag(demo.Command, "--audience")) {
		t.Errorf("demo --audience %q is not in jwt.audiences %v", flag(demo.Command, "--audience"), cfg.JWT.Audiences)
	}
	if cfg.JWT.JWKSURL != demoBase+"/jwks.json" {
		t.Errorf("jwt.jwks_url = %q, want the demo's %s/jwks.json", cfg.JWT.JWKSURL, demoBase)
	}
	for name, pr := range cfg.Providers {
		if pr.TokenURL != demoBase+"/token" {
			t.Errorf("providers.%s.token_url = %q, want the demo's %s/token", name, pr.TokenURL, demoBase)
		}
	}
	// The demo speaks plain http on the compose network: the configuration
	// must say so explicitly, since extauthz refuses http to other hosts.
	if !cfg.AllowInsecureHTTP {
		t.Error("deploy/compose/extauthz.yaml reaches the demo over http: it needs allow_insecure_http: true")
	}
	for _, f := range []string{"--session", "--subject", "--client-id"} {
		if flag(demo.Command, f) == "" || flag(demo.Command, f) != flag(seed.Command, f) {
			t.Errorf("demo %s %q and seed %s %q must match (the binding)", f, flag(demo.Command, f), f, flag(seed.Command, f))
		}
	}
	dependsOn(t, ea, "demo", types.ServiceConditionStarted)
	for k := range environment(ea) {
		if _, ok := environment(demo)[k]; ok {
			t.Errorf("the demo service gets %s: it needs neither the database nor the keys", k)
		}
	}

	// Envoy runs envoy/envoy.yaml, the file envoy/envoy_test.go validates,
	// and reaches extauthz and the backend by their service names.
	envoy := service(t, p, "envoy")
	if !strings.HasPrefix(envoy.Image, "envoyproxy/envoy:v1.") {
		t.Errorf("envoy image %q, want the official envoyproxy/envoy", envoy.Image)
	}
	envoyCfg := flag(envoy.Command, "--config-path")
	if envoyCfg == "" {
		envoyCfg = flag(envoy.Command, "-c")
	}
	envoySrc := bindSource(t, envoy, envoyCfg)
	if envoySrc != abs(t, filepath.Join(root, "envoy/envoy.yaml")) {
		t.Errorf("envoy runs %s, want envoy/envoy.yaml", envoySrc)
	}
	dependsOn(t, envoy, "extauthz", types.ServiceConditionStarted)
	dependsOn(t, envoy, "backend", types.ServiceConditionStarted)
	dependsOn(t, envoy, "seed", types.ServiceConditionCompletedSuccessfully)
	facts := readEnvoy(t, envoySrc)
	if a := facts.clusters[facts.authzCluster]; a.Address != "extauthz" || a.PortValue != port(t, cfg.Listen.GRPC) {
		t.Errorf("Envoy's ext_authz cluster reaches %s:%d, want extauthz:%d (listen.grpc)", a.Address, a.PortValue, port(t, cfg.Listen.GRPC))
	}
	for name, a := range facts.clusters {
		if _, err := p.GetService(a.Address); err != nil {
			t.Errorf("Envoy cluster %s reaches %q, which is no compose service", name, a.Address)
		}
	}
	backendPort := facts.clusters["backend"].PortValue
	if got := flag(service(t, p, "backend").Command, "--port"); got != strconv.Itoa(backendPort) {
		t.Errorf("backend listens on %q, Envoy sends to %d", got, backendPort)
	}
	if d, err := time.ParseDuration(facts.authzTimeout); err != nil || d <= cfg.Refresh.Timeout.D() {
		t.Errorf("Envoy's ext_authz time-out %q must exceed refresh.timeout %v", facts.authzTimeout, cfg.Refresh.Timeout.D())
	}
	for _, list := range facts.providers {
		for _, name := range strings.Split(list, ",") {
			if _, ok := cfg.Providers[name]; !ok {
				t.Errorf("envoy.yaml names provider %q, which deploy/compose/extauthz.yaml does not define (every such Check is a 500)", name)
			}
		}
	}

	// Host ports: on loopback only (the demo mints JWTs for anyone).
	for _, s := range p.Services {
		for _, pc := range s.Ports {
			if pc.HostIP != "127.0.0.1" {
				t.Errorf("service %s publishes port %d on %q, want 127.0.0.1", s.Name, pc.Target, pc.HostIP)
			}
		}
	}
	published := func(s types.ServiceConfig, target int) bool {
		return slices.ContainsFunc(s.Ports, func(pc types.ServicePortConfig) bool { return int(pc.Target) == target })
	}
	if !published(envoy, facts.listenerPorts[0]) || !published(demo, demoPort) {
		t.Error("the README's commands need Envoy's listener and the demo's port published")
	}
}

// TestComposeEnvironment checks the variables the README tells users to set.
func TestComposeEnvironment(t *testing.T) {
	p := loadCompose(t, map[string]string{"DEMO_EXPIRES_AT": "2000-01-01T00:00:00Z", "EXTAUTHZ_IMAGE": "registry.example/extauthz:v1"})
	seed := service(t, p, "seed")
	if got := flag(seed.Command, "--expires-at"); got != "2000-01-01T00:00:00Z" {
		t.Errorf("DEMO_EXPIRES_AT gives seed --expires-at %q", got)
	}
	for _, name := range []string{"migrate", "demo", "seed", "extauthz"} {
		if img := service(t, p, name).Image; img != "registry.example/extauthz:v1" {
			t.Errorf("EXTAUTHZ_IMAGE: service %s runs %q", name, img)
		}
	}
	// A database URL the config accepts, whatever the environment.
	u, err := url.Parse(environment(service(t, p, "extauthz"))["DATABASE_URL"])
	if err != nil || u.Hostname() != "postgres" {
		t.Errorf("DATABASE_URL must reach the postgres service: %v", u)
	}
}

// TestComposeNginx checks the nginx variant (profile nginx): nginx runs
// deploy/nginx/nginx.conf, whose auth location reaches extauthz's
// listen.http on the compose network and whose protected location reaches
// the backend; extauthz's HTTP port is not published, since an allowed
// answer carries the upstream token. internal/cli checks that the file holds
// what proxy-config prints and that nginx accepts it.
func TestComposeNginx(t *testing.T) {
	p := loadCompose(t, nil, "nginx")
	want := []string{"backend", "demo", "envoy", "extauthz", "migrate", "nginx", "postgres", "seed"}
	if got := p.ServiceNames(); !slices.Equal(slices.Sorted(slices.Values(got)), want) {
		t.Errorf("services with profile nginx = %v, want %v", got, want)
	}
	nginx := service(t, p, "nginx")
	if !slices.Equal(nginx.Profiles, []string{"nginx"}) {
		t.Errorf("nginx has profiles %v, want [nginx]: it must stay off by default", nginx.Profiles)
	}
	if !strings.HasPrefix(nginx.Image, "nginx:1.") {
		t.Errorf("nginx image %q, want the official nginx", nginx.Image)
	}
	src := bindSource(t, nginx, "/etc/nginx/nginx.conf")
	if src != abs(t, filepath.Join(root, "deploy/nginx/nginx.conf")) {
		t.Errorf("nginx runs %s, want deploy/nginx/nginx.conf", src)
	}
	dependsOn(t, nginx, "extauthz", types.ServiceConditionStarted)
	dependsOn(t, nginx, "backend", types.ServiceConditionStarted)
	dependsOn(t, nginx, "seed", types.ServiceConditionCompletedSuccessfully)

	ea := service(t, p, "extauthz")
	cfgPath := flag(ea.Command, "--config")
	cfgSrc := bindSource(t, ea, cfgPath)
	cfg := parseConfig(t, cfgSrc, readFile(t, cfgSrc), environment(ea))
	network, addr := cfg.Listen.HTTPAddr()
	if network != "tcp" {
		t.Fatalf("listen.http %q: nginx reaches extauthz over the compose network, not a socket", cfg.Listen.HTTP)
	}
	host, httpPort := addr[:strings.LastIndex(addr, ":")], port(t, addr)
	if host != "extauthz" {
		t.Errorf("listen.http %q: want the service's name (extauthz:PORT), which proxy-config writes as the auth target", addr)
	}
	for _, pc := range ea.Ports {
		if int(pc.Target) == httpPort {
			t.Errorf("extauthz publishes listen.http's port %d: it must stay on the compose network", httpPort)
		}
	}

	conf := string(readFile(t, src))
	auth := "proxy_pass http://extauthz:" + strconv.Itoa(httpPort) + "/auth;"
	backendPort := flag(service(t, p, "backend").Command, "--port")
	for _, w := range []string{auth, "proxy_pass http://backend:" + backendPort + ";", "auth_request /_extauthz;"} {
		if !strings.Contains(conf, w) {
			t.Errorf("deploy/nginx/nginx.conf lacks %q", w)
		}
	}
	listen := regexp.MustCompile(`(?m)^\s*listen\s+(\d+);`).FindStringSubmatch(conf)
	if listen == nil {
		t.Fatal("deploy/nginx/nginx.conf: no listen PORT;")
	}
	if !slices.ContainsFunc(nginx.Ports, func(pc types.ServicePortConfig) bool {
		return strconv.Itoa(int(pc.Target)) == listen[1] && pc.HostIP == "127.0.0.1"
	}) {
		t.Errorf("nginx listens on %s, which it does not publish on 127.0.0.1", listen[1])
	}
}
