// Package localnginx runs nginx in the foreground from a configuration
// generated around the contents of one server block, in a private directory,
// as an unprivileged process. The end-to-end tests and the benchmark use it
// to put nginx, with what `extauthz proxy-config nginx` prints, in front of
// extauthz's HTTP front on 127.0.0.1; CheckCommand has nginx test a whole
// configuration (the deploy/nginx example) the same way. It is not a way to
// run nginx in production: there is no master process, and one worker.
package localnginx

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// nobody is the user and group ID nginx runs as when the caller is root.
const nobody = 65534

// Options describe the nginx to run.
type Options struct {
	// Dir holds the configuration, the pid file, the error log and nginx's
	// temporary directories. It must exist. When the caller is root, nginx
	// runs as nobody, and Command makes Dir writable by everyone.
	Dir string
	// Listen is the server block's listen address, host:port.
	Listen string
	// Server is the contents of the server block, e.g. the locations that
	// `extauthz proxy-config nginx` prints.
	Server string
	// WorkerConnections is nginx's worker_connections: how many
	// connections, to clients and upstreams together, the worker keeps open
	// at once. 0 means 64.
	WorkerConnections int
	// LogLevel is the error log's level. "" means info.
	LogLevel string
}

// ErrorLog returns the path of the error log of an nginx run in dir.
func ErrorLog(dir string) string { return filepath.Join(dir, "error.log") }

// Command writes o.Dir/nginx.conf and returns the command that runs nginx
// (the binary bin) with it, in the foreground, without an access log. The
// caller starts the command and stops it with SIGTERM (fast) or SIGQUIT
// (graceful).
func Command(bin string, o Options) (*exec.Cmd, error) {
	if o.WorkerConnections == 0 {
		o.WorkerConnections = 64
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	conf := fmt.Sprintf(`# Written by internal/localnginx.
daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[2]s %[3]s;
events { worker_connections %[4]d; }
http {
    access_log off;
%[7]s    server {
        listen %[5]s;
%[6]s
    }
}
`, o.Dir, ErrorLog(o.Dir), o.LogLevel, o.WorkerConnections, o.Listen, o.Server, TempPaths(o.Dir))
	path, err := writeConfig(o.Dir, conf)
	if err != nil {
		return nil, err
	}
	return unprivileged(exec.Command(bin, "-p", o.Dir, "-e", ErrorLog(o.Dir), "-c", path), o.Dir)
}

// TempPaths returns the http-context directives that keep nginx's
// temporary files in dir, the one directory an unprivileged nginx may
// write.
func TempPaths(dir string) string {
	return fmt.Sprintf(`    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
`, dir)
}

// CheckCommand writes conf, a whole nginx configuration, to dir/nginx.conf
// and returns the command that has nginx test it (nginx -t: every
// directive loaded, the listen addresses bound), run as Command runs
// nginx: dir (which must exist) is its prefix and holds its pid file, so
// conf sets no pid, and its temporary files belong there too (TempPaths).
// nginx reports on stderr.
func CheckCommand(bin, dir, conf string) (*exec.Cmd, error) {
	path, err := writeConfig(dir, conf)
	if err != nil {
		return nil, err
	}
	return unprivileged(exec.Command(bin, "-t", "-p", dir, "-e", "stderr",
		"-g", "pid "+filepath.Join(dir, "nginx.pid")+";", "-c", path), dir)
}

// writeConfig writes conf to dir/nginx.conf and returns its path.
func writeConfig(dir, conf string) (string, error) {
	path := filepath.Join(dir, "nginx.conf")
	return path, os.WriteFile(path, []byte(conf), 0o644)
}

// unprivileged returns cmd set to run as nobody, in dir made writable by
// everyone, when the caller is root; otherwise cmd as it is.
func unprivileged(cmd *exec.Cmd, dir string) (*exec.Cmd, error) {
	if os.Getuid() != 0 {
		return cmd, nil
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	return cmd, nil
}
