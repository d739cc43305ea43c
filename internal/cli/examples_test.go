package cli

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/localnginx"
	"github.com/extauthz/extauthz/tokencrypt"
)

var updateExamples = flag.Bool("update-examples", false, "rewrite the generated parts of the proxy examples in deploy/ with what proxy-config prints now")

// repoRoot is the repository root, relative to this package.
const repoRoot = "../.."

// exampleConfig is the extauthz configuration every proxy example is
// generated from, relative to the repository root, and exampleBackend the
// protected upstream: the compose stack's extauthz and backend services.
const (
	exampleConfig  = "deploy/compose/extauthz.yaml"
	exampleBackend = "http://backend:8080"
)

// proxyExample is a proxy configuration file in deploy/ that holds what
// proxy-config prints, either as the whole file or between a BEGIN and an
// END line (each indented, the generated lines with the same indentation).
type proxyExample struct {
	proxy, file string
	whole       bool
}

var proxyExamples = []proxyExample{
	{proxy: "nginx", file: "deploy/nginx/nginx.conf"},
	{proxy: "caddy", file: "deploy/caddy/Caddyfile"},
	{proxy: "traefik", file: "deploy/traefik/dynamic.yml", whole: true},
}

func (e proxyExample) args() []string {
	return []string{"proxy-config", e.proxy, "--config", exampleConfig, "--backend", exampleBackend}
}

func (e proxyExample) begin() string { return "# BEGIN extauthz " + strings.Join(e.args(), " ") }
func (e proxyExample) end() string   { return "# END extauthz proxy-config " + e.proxy }

// generated returns what proxy-config prints for the example, with the
// secrets the configuration expands from the environment made up.
func (e proxyExample) generated(t *testing.T) string {
	t.Helper()
	env := map[string]string{
		"DATABASE_URL":            "postgres://extauthz@postgres:5432/extauthz",
		"EXTAUTHZ_ENCRYPTION_KEY": tokencrypt.GenerateKey(),
		"GITHUB_CLIENT_SECRET":    "example",
	}
	args := e.args()
	args[3] = filepath.Join(repoRoot, exampleConfig)
	var out, errs bytes.Buffer
	if code := Run(context.Background(), args, Env{Stdout: &out, Stderr: &errs, Getenv: func(k string) string { return env[k] }}); code != ExitOK {
		t.Fatalf("proxy-config %s: exit %d: %s", e.proxy, code, errs.String())
	}
	return out.String()
}

// splice returns file with the part between its BEGIN and END lines
// replaced by generated, indented as the BEGIN line, and that part as it
// is, unindented.
func (e proxyExample) splice(t *testing.T, file, generated string) (spliced, current string) {
	t.Helper()
	if e.whole {
		return generated, file
	}
	lines := strings.SplitAfter(file, "\n")
	begin, end := -1, -1
	for i, l := range lines {
		switch strings.TrimSpace(l) {
		case e.begin():
			begin = i
		case e.end():
			end = i
		}
	}
	if begin < 0 || end < begin {
		t.Fatalf("%s: no line %q followed by a line %q", e.file, e.begin(), e.end())
	}
	indent := lines[begin][:len(lines[begin])-len(strings.TrimLeft(lines[begin], " \t"))]
	var cur, gen strings.Builder
	for _, l := range lines[begin+1 : end] {
		cur.WriteString(strings.TrimPrefix(l, indent))
	}
	for _, l := range strings.SplitAfter(generated, "\n") {
		if strings.TrimSpace(l) != "" {
			gen.WriteString(indent + l)
		} else if l != "" {
			gen.WriteString("\n")
		}
	}
	return strings.Join(lines[:begin+1], "") + gen.String() + strings.Join(lines[end:], ""), cur.String()
}

// TestProxyExamples: the proxy examples in deploy/ hold exactly what
// proxy-config prints now for the example configuration. With
// -update-examples it rewrites them instead.
func TestProxyExamples(t *testing.T) {
	for _, e := range proxyExamples {
		t.Run(e.proxy, func(t *testing.T) {
			path := filepath.Join(repoRoot, e.file)
			file, err := os.ReadFile(path)
			if err != nil && !(*updateExamples && e.whole && os.IsNotExist(err)) {
				t.Fatal(err)
			}
			want := e.generated(t)
			spliced, current := e.splice(t, string(file), want)
			if current == want {
				return
			}
			if *updateExamples {
				if err := os.WriteFile(path, []byte(spliced), 0o644); err != nil {
					t.Fatal(err)
				}
				t.Logf("%s: rewritten", e.file)
				return
			}
			t.Errorf("%s differs from what %q prints now; regenerate it with\n"+
				"  go test ./internal/cli -run TestProxyExamples -update-examples\n"+
				"(from the repository root) and review the change.", e.file, "extauthz "+strings.Join(e.args(), " "))
		})
	}
}

// TestNginxExample checks deploy/nginx/nginx.conf with the real nginx
// (nginx -t, which loads every directive, unprivileged as the end-to-end
// test runs nginx: localnginx.CheckCommand). It checks a copy: nginx
// resolves proxy_pass host names when it loads a configuration, so the
// compose network's extauthz and backend become loopback addresses; nginx
// -t binds the listen port, so the copy listens on a free one; and the copy
// keeps nginx's temporary files in the test's directory. The rest is the
// file as committed.
func TestNginxExample(t *testing.T) {
	bin := proxyBinary(t, nginxEnvVar)
	dir, listen := nginxDir(t), "listen "+freeTCPAddr(t)+";"
	conf := strings.NewReplacer(
		"http://extauthz:", "http://127.0.0.1:",
		"http://backend:", "http://127.0.0.1:",
		"listen 8081;", listen,
		"\nhttp {\n", "\nhttp {\n"+localnginx.TempPaths(dir),
	).Replace(string(readExample(t, "deploy/nginx/nginx.conf")))
	if !strings.Contains(conf, listen) {
		t.Fatal("deploy/nginx/nginx.conf: no \"listen 8081;\" to replace with a free port")
	}
	cmd, err := localnginx.CheckCommand(bin, dir, conf)
	if err != nil {
		t.Fatal(err)
	}
	// The file logs access to /dev/stdout, which nginx opens: as nobody it
	// may open /dev/null, not the test's pipe. It reports on stderr.
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	cmd.Stdout = devNull
	runCheck(t, cmd)
}

// TestCaddyExample adapts and validates deploy/caddy/Caddyfile with the
// real caddy.
func TestCaddyExample(t *testing.T) {
	bin := proxyBinary(t, caddyEnvVar)
	path, err := filepath.Abs(filepath.Join(repoRoot, "deploy/caddy/Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, sub := range []string{"adapt", "validate"} {
		cmd := exec.Command(bin, sub, "--config", path, "--adapter", "caddyfile")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
		runCheck(t, cmd)
	}
}

func readExample(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, file))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// runCheck runs cmd, a proxy's configuration check, and fails with its
// output (stderr, and stdout unless cmd sends it elsewhere) unless it exits
// 0 within a minute.
func runCheck(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	var out bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &out
	}
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out.String())
		}
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s: no answer within a minute\n%s", strings.Join(cmd.Args, " "), out.String())
	}
}
