package localpg

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/testutil"

	"github.com/jackc/pgx/v5"
)

// syncBuffer collects output written concurrently.
type syncBuffer = testutil.SyncBuffer

// start calls Start and skips the test if PostgreSQL is not installed
// (failing instead on CI).
func start(t *testing.T, ctx context.Context, dir string, logw *syncBuffer) *Cluster {
	t.Helper()
	c, err := Start(ctx, dir, logw)
	if errors.Is(err, ErrNotInstalled) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatalf("Start: %v\nlog:\n%s", err, logw)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("Stop in cleanup: %v", err)
		}
	})
	return c
}

// tempDir returns a new directory that the postgres OS user can enter: the
// directories of t.TempDir are 0700 and owned by whoever runs the test.
func tempDir(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	top := filepath.Clean(os.TempDir())
	for d := base; d != top && d != filepath.Dir(d); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return base
}

func query(t *testing.T, ctx context.Context, dsn, sql string) string {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to %s: %v", dsn, err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func execSQL(t *testing.T, ctx context.Context, dsn, sql string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to %s: %v", dsn, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

var dsnRE = regexp.MustCompile(`^postgres://postgres@127\.0\.0\.1:[0-9]+/postgres\?sslmode=disable$`)

func TestStartStopReuse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := filepath.Join(tempDir(t), "pgdata")
	var logw syncBuffer

	// First start: initdb, then start.
	c := start(t, ctx, dir, &logw)
	if !dsnRE.MatchString(c.DSN()) {
		t.Errorf("DSN() = %q", c.DSN())
	}
	if c.Reused() || c.Dir() != dir {
		t.Errorf("Reused() = %v, Dir() = %q", c.Reused(), c.Dir())
	}
	if got := query(t, ctx, c.DSN(), "SELECT 1::text"); got != "1" {
		t.Errorf("SELECT 1 = %q", got)
	}
	if got := query(t, ctx, c.DSN(), "SHOW listen_addresses"); got != "127.0.0.1" {
		t.Errorf("listen_addresses = %q, want 127.0.0.1", got)
	}
	if got := query(t, ctx, c.DSN(), "SHOW unix_socket_directories"); got != dir {
		t.Errorf("unix_socket_directories = %q, want %q", got, dir)
	}
	execSQL(t, ctx, c.DSN(), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
	for _, want := range []string{"creating a PostgreSQL cluster", "Success", "server started"} {
		if !strings.Contains(logw.String(), want) {
			t.Errorf("log does not contain %q:\n%s", want, logw.String())
		}
	}

	// A second Start while the server runs reuses it.
	again := start(t, ctx, dir, &logw)
	if !again.Reused() || again.DSN() != c.DSN() {
		t.Errorf("second Start: Reused() = %v, DSN() = %q; want true, %q", again.Reused(), again.DSN(), c.DSN())
	}

	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v\nlog:\n%s", err, logw.String())
	}
	if conn, err := pgx.Connect(ctx, c.DSN()); err == nil {
		conn.Close(ctx)
		t.Fatal("server still accepts connections after Stop")
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}

	// Start again on the same directory: no initdb, the data is still there.
	before := strings.Count(logw.String(), "creating a PostgreSQL cluster")
	c2 := start(t, ctx, dir, &logw)
	if c2.Reused() {
		t.Error("Start after Stop claims to reuse a running server")
	}
	if n := strings.Count(logw.String(), "creating a PostgreSQL cluster"); n != before {
		t.Errorf("Start on an existing cluster ran initdb again")
	}
	if got := query(t, ctx, c2.DSN(), "SELECT v FROM kept"); got != "still here" {
		t.Errorf("SELECT v FROM kept = %q", got)
	}
	if err := c2.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

func TestStartRefusesForeignDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), dir, nil)
	if err == nil || errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Start on a non-empty directory: err = %v", err)
	}
}

// fakeBinDir creates libDir/version/bin with executable initdb, pg_ctl
// (answering --version) and postgres.
func fakeBinDir(t *testing.T, lib, version, reported string) string {
	t.Helper()
	dir := filepath.Join(lib, version, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		script := "#!/bin/sh\necho '" + name + " (PostgreSQL) " + reported + " (Debian)'\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestFindBinDir(t *testing.T) {
	lib := t.TempDir()
	old := libDir
	libDir = lib
	t.Cleanup(func() { libDir = old })
	t.Setenv("PATH", "")
	ctx := context.Background()

	if _, err := findBinDir(ctx, ""); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("no binaries: err = %v, want ErrNotInstalled", err)
	}
	if !strings.Contains(ErrNotInstalled.Error(), "apt-get install postgresql") {
		t.Errorf("ErrNotInstalled does not say how to install: %v", ErrNotInstalled)
	}

	v96 := fakeBinDir(t, lib, "9.6", "9.6.24")
	v15 := fakeBinDir(t, lib, "15", "15.8")
	v16 := fakeBinDir(t, lib, "16", "16devel")
	// A version directory without the server binaries does not count.
	if err := os.MkdirAll(filepath.Join(lib, "17", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ want, dir string }{
		{"", v16},
		{"15", v15},
		{"9.6", v96},
		{"16", v16},
		{"12", v16}, // no match: the highest
	} {
		got, err := findBinDir(ctx, tc.want)
		if err != nil || got != tc.dir {
			t.Errorf("findBinDir(%q) = %q, %v; want %q", tc.want, got, err, tc.dir)
		}
	}

	// pg_ctl on PATH comes first.
	onPath := fakeBinDir(t, t.TempDir(), "x", "14.1")
	t.Setenv("PATH", onPath)
	if got, _ := findBinDir(ctx, ""); got != onPath {
		t.Errorf("findBinDir with pg_ctl on PATH = %q, want %q", got, onPath)
	}
	if got, _ := findBinDir(ctx, "15"); got != v15 {
		t.Errorf("findBinDir(15) with 14 on PATH = %q, want %q", got, v15)
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"9.6", "15", -1},
		{"15", "9.6", 1},
		{"15", "15", 0},
		{"10", "9.6", 1},
		{"16", "15", 1},
	} {
		if got := compareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestTail(t *testing.T) {
	if got := tail(nil); got != "" {
		t.Errorf("tail(nil) = %q", got)
	}
	if got := tail([]byte("a\n\nb\nc\nd\ne\nf\n")); got != ": b; c; d; e; f" {
		t.Errorf("tail = %q", got)
	}
}

func TestStartAsRootUnreachableDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root hands the directory to the postgres user")
	}
	if _, err := findBinDir(context.Background(), ""); err != nil {
		t.Skipf("skipping: %v", err)
	}
	// t.TempDir is 0700 and owned by root: the postgres user cannot enter.
	dir := filepath.Join(t.TempDir(), "pgdata")
	_, err := Start(context.Background(), dir, nil)
	if err == nil || !strings.Contains(err.Error(), "cannot enter") {
		t.Errorf("Start under a directory closed to postgres: err = %v", err)
	}
}

func TestRestartKeepsThePort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := filepath.Join(tempDir(t), "pgdata")
	var logw syncBuffer
	c := start(t, ctx, dir, &logw)
	dsn := c.DSN()
	execSQL(t, ctx, dsn, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
	if err := c.Restart(ctx); err != nil {
		t.Fatalf("Restart of a running server: %v", err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v\nlog:\n%s", err, logw.String())
	}
	if err := c.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v\nlog:\n%s", err, logw.String())
	}
	if c.DSN() != dsn {
		t.Errorf("DSN after Restart = %q, want %q", c.DSN(), dsn)
	}
	if got := query(t, ctx, dsn, "SELECT v FROM kept"); got != "still here" {
		t.Errorf("SELECT v FROM kept = %q", got)
	}
}
