// Package localpg runs a private PostgreSQL server for `extauthz dev` from the
// PostgreSQL binaries installed on the system.
//
// The server is for development only: every local connection is trusted
// without a password, and it listens on 127.0.0.1 (and on a Unix socket inside
// its data directory) only.
package localpg

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNotInstalled means no PostgreSQL server binaries were found.
var ErrNotInstalled = errors.New("localpg: PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in /usr/lib/postgresql/*/bin: install the postgresql package (apt-get install postgresql)")

// Superuser is the database superuser of a cluster created by Start.
const Superuser = "postgres"

// osUser is the operating-system user that runs PostgreSQL when Start runs
// as root (PostgreSQL refuses to run as root).
const osUser = "postgres"

// startTimeout bounds how long pg_ctl waits for the server to start or stop,
// in seconds.
const startTimeout = 60

// libDir is where Debian and Ubuntu install one directory per PostgreSQL
// major version. A variable for tests.
var libDir = "/usr/lib/postgresql"

// Cluster is a running PostgreSQL server with its data in a local directory.
type Cluster struct {
	dir    string
	bin    string
	port   int
	reused bool
	asUser []string // command prefix that runs as the PostgreSQL OS user; empty if not root
	logw   io.Writer
}

// Start initialises dir as a PostgreSQL data directory if it holds no cluster
// yet (initdb with trust authentication and superuser "postgres"), configures
// it to listen on 127.0.0.1 only with its Unix socket inside dir, and starts
// it on a free TCP port; if a server is already running from dir, Start
// reuses it. Start returns once the server accepts connections.
//
// The binaries are looked up on PATH, else in /usr/lib/postgresql/*/bin,
// preferring the version that created dir, else the highest; without any,
// Start fails with ErrNotInstalled. When running as root, Start hands dir to
// the "postgres" OS user and runs initdb and pg_ctl as that user with
// `runuser -u postgres --`; every parent directory of dir must then be
// searchable by that user.
//
// logw (may be nil) receives initdb's and pg_ctl's output and the server's
// log lines written while starting. The server keeps running when the calling
// process exits: call Stop.
func Start(ctx context.Context, dir string, logw io.Writer) (*Cluster, error) {
	if logw == nil {
		logw = io.Discard
	}
	if dir == "" {
		return nil, errors.New("localpg: no data directory given")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("localpg: %w", err)
	}
	c := &Cluster{dir: abs, logw: logw}

	version, err := clusterVersion(abs)
	if err != nil {
		return nil, err
	}
	if c.bin, err = findBinDir(ctx, version); err != nil {
		return nil, err
	}
	if err := c.prepareDir(ctx, version == ""); err != nil {
		return nil, err
	}
	if version == "" {
		if err := c.initdb(ctx); err != nil {
			return nil, err
		}
	}

	running, err := c.running(ctx)
	if err != nil {
		return nil, err
	}
	if running {
		if c.port, err = c.pidFilePort(); err != nil {
			return nil, err
		}
		c.reused = true
		fmt.Fprintf(logw, "localpg: reusing the PostgreSQL server already running from %s on port %d\n", abs, c.port)
	} else if err := c.start(ctx, 0); err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// DSN returns the server's connection URL as the superuser, over TCP without
// TLS: postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable.
func (c *Cluster) DSN() string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(Superuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/postgres",
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Dir returns the absolute path of the data directory.
func (c *Cluster) Dir() string { return c.dir }

// Reused reports whether Start found the server already running rather than
// starting it.
func (c *Cluster) Reused() bool { return c.reused }

// Stop stops the server with a fast shutdown (pg_ctl stop -m fast: open
// sessions are disconnected, no data is lost) and waits until it has exited.
// Stopping a server that no longer runs is not an error.
func (c *Cluster) Stop() error { return c.stop("fast") }

// stop stops the server, if it runs, with pg_ctl stop -m mode, and waits
// until it has exited.
func (c *Cluster) stop(mode string) error {
	ctx, cancel := context.WithTimeout(context.Background(), (startTimeout+10)*time.Second)
	defer cancel()
	running, err := c.running(ctx)
	if err != nil || !running {
		return err
	}
	out, err := c.run(ctx, "pg_ctl", "stop", "-D", c.dir, "-m", mode, "-w", "-t", strconv.Itoa(startTimeout))
	if err != nil {
		return fmt.Errorf("localpg: pg_ctl stop -m %s: %w%s", mode, err, tail(out))
	}
	return nil
}

// Restart starts the server again after Stop, on the port it had, so that
// connection URLs taken from DSN stay valid (a connection pool reconnects by
// itself), and returns once it accepts connections. It fails if that port
// has been taken meanwhile. Restarting a server that runs is not an error.
func (c *Cluster) Restart(ctx context.Context) error {
	running, err := c.running(ctx)
	if err != nil {
		return err
	}
	if !running {
		if err := c.start(ctx, c.port); err != nil {
			return err
		}
	}
	return c.waitReady(ctx)
}

// StartStandby makes dir a streaming replica of c (pg_basebackup -R over
// TCP, as the superuser, which the trust authentication of a cluster made by
// Start lets replicate), starts it on a free TCP port and returns once it
// accepts (read-only) connections. dir must not exist or be empty; when
// running as root the same rules as for Start apply to it. Without
// pg_basebackup next to c's binaries, it fails with an error wrapping
// ErrNotInstalled. The standby keeps running when the calling process
// exits: call Stop.
func (c *Cluster) StartStandby(ctx context.Context, dir string, logw io.Writer) (*Cluster, error) {
	if logw == nil {
		logw = io.Discard
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("localpg: %w", err)
	}
	if version, err := clusterVersion(abs); err != nil {
		return nil, err
	} else if version != "" {
		return nil, fmt.Errorf("localpg: %s already holds a cluster: a standby needs an empty directory", abs)
	}
	if fi, err := os.Stat(filepath.Join(c.bin, "pg_basebackup")); err != nil || fi.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("%w (pg_basebackup is missing from %s)", ErrNotInstalled, c.bin)
	}
	s := &Cluster{dir: abs, bin: c.bin, logw: logw}
	if err := s.prepareDir(ctx, true); err != nil {
		return nil, err
	}
	fmt.Fprintf(logw, "localpg: copying the cluster on port %d into %s as a standby\n", c.port, abs)
	out, err := s.run(ctx, "pg_basebackup", "-D", abs, "-R", "-X", "stream", "-c", "fast",
		"-h", "127.0.0.1", "-p", strconv.Itoa(c.port), "-U", Superuser)
	if err != nil {
		return nil, fmt.Errorf("localpg: pg_basebackup: %w%s", err, tail(out))
	}
	// The copy's postgresql.conf names the primary's socket directory.
	if err := s.appendConf("internal/localpg for a standby"); err != nil {
		return nil, err
	}
	if err := s.start(ctx, 0); err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Kill stops the server the way a crash would (pg_ctl stop -m immediate:
// no checkpoint, sessions cut at once) and waits until it has exited.
// Killing a server that no longer runs is not an error.
func (c *Cluster) Kill() error { return c.stop("immediate") }

// Promote turns a standby into a primary (pg_ctl promote) and returns once
// it accepts writes.
func (c *Cluster) Promote(ctx context.Context) error {
	out, err := c.run(ctx, "pg_ctl", "promote", "-D", c.dir, "-w", "-t", strconv.Itoa(startTimeout))
	if err != nil {
		return fmt.Errorf("localpg: pg_ctl promote: %w%s", err, tail(out))
	}
	return nil
}

// clusterVersion returns the major version recorded in dir/PG_VERSION, or ""
// if dir holds no cluster. A directory that exists, is not empty and is not a
// cluster is an error: Start will not initialise over someone's files.
func clusterVersion(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "PG_VERSION"))
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("localpg: %w", err)
	}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("localpg: %w", err)
	case len(entries) > 0:
		return "", fmt.Errorf("localpg: %s is not empty and holds no PostgreSQL cluster (no PG_VERSION): choose another directory", dir)
	}
	return "", nil
}

// findBinDir returns the directory that holds initdb, pg_ctl and postgres.
// Candidates are the directory of pg_ctl on PATH (symbolic links resolved),
// then /usr/lib/postgresql/*/bin, highest version first. If want is set (the
// major version of an existing cluster), the first candidate of that version
// wins; otherwise the first candidate.
func findBinDir(ctx context.Context, want string) (string, error) {
	var candidates []string
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if p, err := filepath.EvalSymlinks(p); err == nil {
			candidates = append(candidates, filepath.Dir(p))
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(libDir, "*", "bin"))
	slices.SortFunc(dirs, func(a, b string) int {
		return -compareVersions(filepath.Base(filepath.Dir(a)), filepath.Base(filepath.Dir(b)))
	})
	candidates = append(candidates, dirs...)

	var found []string
	for _, d := range candidates {
		if hasServerBinaries(d) && !slices.Contains(found, d) {
			found = append(found, d)
		}
	}
	if len(found) == 0 {
		return "", ErrNotInstalled
	}
	if want != "" {
		for _, d := range found {
			if majorVersion(ctx, d) == want {
				return d, nil
			}
		}
	}
	return found[0], nil
}

func hasServerBinaries(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// majorVersion returns the major version of the binaries in dir, from
// `pg_ctl --version` ("pg_ctl (PostgreSQL) 15.8 (Debian 15.8-1)"), or "".
func majorVersion(ctx context.Context, dir string) string {
	out, err := exec.CommandContext(ctx, filepath.Join(dir, "pg_ctl"), "--version").Output()
	if err != nil {
		return ""
	}
	_, rest, ok := strings.Cut(string(out), "(PostgreSQL) ")
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(strings.Fields(rest + " ")[0], "devel")
	major, minor, _ := strings.Cut(v, ".")
	if n, err := strconv.Atoi(major); err == nil && n < 10 {
		// Before version 10 the major version has two parts: 9.6.
		m, _, _ := strings.Cut(minor, ".")
		return major + "." + m
	}
	return major
}

// compareVersions compares dotted version strings numerically ("9.6" < "15").
// Parts that are not numbers compare as 0.
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return strings.Compare(a, b)
}

// prepareDir creates dir if needed and, when running as root, gives it to the
// PostgreSQL OS user and sets up c.asUser.
func (c *Cluster) prepareDir(ctx context.Context, fresh bool) error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(osUser)
	if err != nil {
		return fmt.Errorf("localpg: running as root, and PostgreSQL refuses to: there is no %q user to run it as (%w)", osUser, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("localpg: user %q has a non-numeric uid or gid", osUser)
	}
	runuser, err := exec.LookPath("runuser")
	if err != nil {
		for _, p := range []string{"/usr/sbin/runuser", "/sbin/runuser"} {
			if _, err := os.Stat(p); err == nil {
				runuser = p
				break
			}
		}
		if runuser == "" {
			return errors.New("localpg: running as root, but runuser (util-linux) is not installed to run PostgreSQL as the postgres user")
		}
	}
	c.asUser = []string{runuser, "-u", osUser, "--"}

	// Hand the directory to the postgres user. An existing cluster is
	// chowned too (it may have been created by another user), but only
	// where the owner differs.
	if !fresh || !ownedBy(c.dir, uid) {
		err := filepath.WalkDir(c.dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if ownedBy(p, uid) {
				return nil
			}
			return os.Lchown(p, uid, gid)
		})
		if err != nil {
			return fmt.Errorf("localpg: give %s to the %s user: %w", c.dir, osUser, err)
		}
	}
	// The postgres user must reach and write the directory: with a parent
	// that only root may enter (a home directory, a 0700 temporary
	// directory), initdb would fail with a less helpful message.
	if _, err := c.probe(ctx, "test", "-w", c.dir, "-a", "-x", c.dir); err != nil {
		return fmt.Errorf("localpg: the %s user cannot enter %s: make every parent directory searchable by it (chmod o+x), or choose a directory elsewhere", osUser, c.dir)
	}
	return nil
}

func ownedBy(path string, uid int) bool {
	fi, err := os.Lstat(path)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == uid
}

// initdb creates the cluster and appends the development settings to its
// postgresql.conf.
func (c *Cluster) initdb(ctx context.Context) error {
	fmt.Fprintf(c.logw, "localpg: creating a PostgreSQL cluster in %s\n", c.dir)
	out, err := c.run(ctx, "initdb", "-D", c.dir, "-U", Superuser, "--auth=trust", "--encoding=UTF8", "--locale=C")
	if err != nil {
		return fmt.Errorf("localpg: initdb: %w%s", err, tail(out))
	}

	return c.appendConf("extauthz dev (internal/localpg): development only")
}

// appendConf appends to the cluster's postgresql.conf the settings that
// keep it local: listen on 127.0.0.1 only, with the Unix socket in the data
// directory (where the path allows one). A later line wins, so this also
// overrides what a copied postgresql.conf (a standby's) says.
func (c *Cluster) appendConf(by string) error {
	// The socket path must fit in sockaddr_un (107 bytes on Linux): with a
	// deeper directory, listen on TCP only.
	sockets := c.dir
	if len(c.dir)+len("/.s.PGSQL.65535") > 107 {
		sockets = ""
		fmt.Fprintf(c.logw, "localpg: %s is too long a path for a Unix socket: listening on TCP only\n", c.dir)
	}
	conf := fmt.Sprintf("\n# Added by %s.\n"+
		"listen_addresses = '127.0.0.1'\n"+
		"unix_socket_directories = %s\n", by, quoteConf(sockets))
	// Appending keeps the file's owner (the postgres user when root).
	f, err := os.OpenFile(filepath.Join(c.dir, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	if _, err := f.WriteString(conf); err != nil {
		f.Close()
		return fmt.Errorf("localpg: write postgresql.conf: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("localpg: write postgresql.conf: %w", err)
	}
	return nil
}

// quoteConf quotes s as a postgresql.conf string value.
func quoteConf(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// running reports whether a server is running from c.dir (pg_ctl status).
func (c *Cluster) running(ctx context.Context) (bool, error) {
	out, err := c.probe(ctx, filepath.Join(c.bin, "pg_ctl"), "status", "-D", c.dir)
	if err == nil {
		return true, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 3 { // "no server running"
		return false, nil
	}
	return false, fmt.Errorf("localpg: pg_ctl status: %w%s", err, tail(out))
}

// start starts the server on port, or if port is 0 on a free port, trying
// another if the port was taken in the meantime.
func (c *Cluster) start(ctx context.Context, fixed int) error {
	logFile := filepath.Join(c.dir, "server.log")
	var lastErr error
	for range 3 {
		port := fixed
		if port == 0 {
			var err error
			if port, err = freePort(); err != nil {
				return fmt.Errorf("localpg: find a free port: %w", err)
			}
		}
		offset := fileSize(logFile)
		fmt.Fprintf(c.logw, "localpg: starting PostgreSQL on 127.0.0.1:%d (log in %s)\n", port, logFile)
		// -o is parsed by a shell: the port is a number, nothing else is
		// passed this way. -l keeps the server's output out of our pipes.
		out, err := c.run(ctx, "pg_ctl", "start", "-D", c.dir, "-l", logFile, "-w", "-t", strconv.Itoa(startTimeout),
			"-o", "-p "+strconv.Itoa(port))
		serverLog := copyFrom(logFile, offset, c.logw)
		if err == nil {
			c.port = port
			return nil
		}
		lastErr = fmt.Errorf("localpg: pg_ctl start: %w%s%s", err, tail(out), tail(serverLog))
		if fixed != 0 || ctx.Err() != nil || !bytes.Contains(serverLog, []byte("could not bind")) {
			break
		}
	}
	return lastErr
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// pidFilePort reads the port of the running server from postmaster.pid
// (line 4; line 6 is its listen_addresses).
func (c *Cluster) pidFilePort() (int, error) {
	b, err := os.ReadFile(filepath.Join(c.dir, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("localpg: a server is running from %s but its postmaster.pid cannot be read: %w", c.dir, err)
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 6 {
		return 0, fmt.Errorf("localpg: %s/postmaster.pid is incomplete: is the server still starting?", c.dir)
	}
	port, err := strconv.Atoi(strings.TrimSpace(lines[3]))
	if err != nil || port <= 0 {
		return 0, fmt.Errorf("localpg: %s/postmaster.pid names no port", c.dir)
	}
	if addrs := strings.TrimSpace(lines[5]); addrs == "" {
		return 0, fmt.Errorf("localpg: the server running from %s does not listen on TCP: stop it (pg_ctl stop -D %s) and start again", c.dir, c.dir)
	}
	return port, nil
}

// waitReady waits until the server answers a query over TCP.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout*time.Second)
	defer cancel()
	var lastErr error
	for {
		if lastErr = ping(ctx, c.DSN()); lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("localpg: the server on 127.0.0.1:%d does not accept connections: %w", c.port, lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func ping(ctx context.Context, dsn string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// run runs the PostgreSQL program name from c.bin as the PostgreSQL OS user
// when root, in c.dir. Its output goes to c.logw and is also returned.
func (c *Cluster) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return c.exec(ctx, true, filepath.Join(c.bin, name), args...)
}

// probe is run for commands whose output is only inspected (pg_ctl status,
// test): it does not go to c.logw.
func (c *Cluster) probe(ctx context.Context, path string, args ...string) ([]byte, error) {
	return c.exec(ctx, false, path, args...)
}

func (c *Cluster) exec(ctx context.Context, logged bool, path string, args ...string) ([]byte, error) {
	argv := append(append(slices.Clone(c.asUser), path), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// Run from the data directory: the postgres user may not be allowed
	// into the current one, which initdb and pg_ctl complain about.
	cmd.Dir = c.dir
	// A minimal environment: the server inherits it, and the caller's may
	// hold secrets (client secrets, keys) or PG* variables that do not apply.
	pathEnv := os.Getenv("PATH")
	if pathEnv == "" {
		pathEnv = "/usr/local/bin:/usr/bin:/bin"
	}
	cmd.Env = []string{"PATH=" + pathEnv, "LC_ALL=C", "LANG=C", "PGDATA=" + c.dir}
	if tz, ok := os.LookupEnv("TZ"); ok {
		cmd.Env = append(cmd.Env, "TZ="+tz)
	}
	var out bytes.Buffer
	w := io.Writer(&out)
	if logged {
		w = io.MultiWriter(&out, c.logw)
	}
	cmd.Stdout, cmd.Stderr = w, w
	// If a child keeps our pipe open (it should not: the server's output
	// goes to its log file), do not wait for it forever.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return out.Bytes(), err
}

// fileSize returns the size of path, 0 if it does not exist.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// copyFrom copies what path holds past offset to w, and returns it.
func copyFrom(path string, offset int64, w io.Writer) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	w.Write(b)
	return b
}

// tail formats the last lines of a program's output for an error message.
func tail(out []byte) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return ""
	}
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return ": " + strings.Join(lines, "; ")
}
