package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"

	"github.com/jackc/pgx/v5"

	"github.com/extauthz/extauthz/internal/localpg"
)

// database is the PostgreSQL server the benchmark runs against.
type database struct {
	dsn     string
	cluster *localpg.Cluster // nil when the server was given with -database-url
	tmp     string
}

// startDatabase starts a throwaway cluster in a temporary directory with
// internal/localpg (the system's PostgreSQL binaries; see scripts/lib/
// postgres.sh, which bench/run uses to install them when missing), tuned as
// scripts/test tunes its cluster: no fsync, asynchronous commit, no full page
// writes. Durability is not what is measured.
func startDatabase(ctx context.Context, logw io.Writer) (*database, error) {
	tmp, err := os.MkdirTemp("", "extauthz-bench-pg.")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // PostgreSQL runs as "postgres" when we are root
		os.RemoveAll(tmp)
		return nil, err
	}
	c, err := localpg.Start(ctx, tmp+"/data", logw)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	db := &database{dsn: c.DSN(), cluster: c, tmp: tmp}
	conn, err := pgx.Connect(ctx, db.dsn)
	if err != nil {
		db.stop()
		return nil, err
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		"ALTER SYSTEM SET fsync = off",
		"ALTER SYSTEM SET synchronous_commit = off",
		"ALTER SYSTEM SET full_page_writes = off",
		"SELECT pg_reload_conf()",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			db.stop()
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	return db, nil
}

func (db *database) stop() {
	if db.cluster != nil {
		_ = db.cluster.Stop()
		os.RemoveAll(db.tmp)
	}
}

// cpuSeconds returns the CPU time of the whole local server (postmaster and
// backends), or -1 when the server is not local.
func (db *database) cpuSeconds() float64 {
	if db.cluster == nil {
		return -1
	}
	pid, err := postmasterPID(db.cluster.Dir())
	if err != nil {
		return -1
	}
	s, err := treeCPUSeconds(pid)
	if err != nil {
		return -1
	}
	return s
}

// transactions returns the number of transactions committed or rolled back
// in the current database so far, by the statistics system. Every statement
// the service runs outside an explicit transaction is one, so the
// difference over a run, per Check, counts the service's round trips to
// PostgreSQL.
//
// A backend reports its counts when it exits, and otherwise when it goes
// idle at least a second after its previous report; counts it could not
// report then wait for up to 10 s of idleness (PGSTAT_IDLE_INTERVAL). So a
// reading is exact once the backends that worked have exited or been idle
// for more than 10 s.
func (db *database) transactions(ctx context.Context) (int64, error) {
	conn, err := pgx.Connect(ctx, db.dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int64
	err = conn.QueryRow(ctx,
		"SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()").Scan(&n)
	return n, err
}

// migrate runs `extauthz migrate` against the database.
func migrate(ctx context.Context, extauthz, dsn string, logw io.Writer) error {
	cmd := exec.CommandContext(ctx, extauthz, "migrate", "--database-url", dsn)
	cmd.Stdout, cmd.Stderr = logw, logw
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("extauthz migrate: %w", err)
	}
	return nil
}
