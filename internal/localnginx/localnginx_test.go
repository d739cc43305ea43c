package localnginx

import (
	"net"
	"os"
	"strings"
	"testing"
)

func TestCommandWritesConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want []string
	}{
		{
			name: "defaults",
			o:    Options{Listen: "127.0.0.1:8080", Server: "        location / { return 204; }"},
			want: []string{"worker_connections 64;", "error.log info;", "listen 127.0.0.1:8080;", "location / { return 204; }", "master_process off;"},
		},
		{
			name: "for load",
			o:    Options{Listen: "127.0.0.1:8081", Server: "", WorkerConnections: 1024, LogLevel: "warn"},
			want: []string{"worker_connections 1024;", "error.log warn;", "listen 127.0.0.1:8081;"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Dir = t.TempDir()
			cmd, err := Command("/usr/sbin/nginx", tc.o)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(tc.o.Dir + "/nginx.conf")
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("nginx.conf lacks %q:\n%s", w, b)
				}
			}
			if got := strings.Join(cmd.Args[1:], " "); got != "-p "+tc.o.Dir+" -e "+ErrorLog(tc.o.Dir)+" -c "+tc.o.Dir+"/nginx.conf" {
				t.Errorf("args %q", got)
			}
			if (os.Getuid() == 0) != (cmd.SysProcAttr != nil && cmd.SysProcAttr.Credential != nil) {
				t.Errorf("runs as nobody: %v, caller is root: %v", cmd.SysProcAttr != nil, os.Getuid() == 0)
			}
		})
	}
}

// TestConfigIsValid has nginx itself check a configuration Command writes
// (scripts/test sets EXTAUTHZ_TEST_NGINX).
func TestConfigIsValid(t *testing.T) {
	bin := os.Getenv("EXTAUTHZ_TEST_NGINX")
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("EXTAUTHZ_TEST_NGINX is not set (scripts/test sets it)")
		}
		t.Skip("EXTAUTHZ_TEST_NGINX is not set: no nginx to check the configuration with (scripts/test installs and sets it)")
	}
	dir, err := os.MkdirTemp("", "extauthz-localnginx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// nginx -t binds the listen address: give it one that is free.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd, err := Command(bin, Options{Dir: dir, Listen: addr, Server: "        location / { return 204; }"})
	if err != nil {
		t.Fatal(err)
	}
	cmd.Args = append(cmd.Args, "-t")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
}
