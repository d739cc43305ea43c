// Package migrations holds the PostgreSQL schema of extauthz as numbered SQL
// files for pressly/goose, embedded in the binary, and applies them.
//
// Files are named NNNNN_description.sql and carry "-- +goose Up" and
// "-- +goose Down" sections. A released file is never edited: a change to the
// schema is a new file with the next number.
package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// FS holds the migration files, at its root.
//
//go:embed *.sql
var FS embed.FS

const (
	// VersionTable is the table in which goose records the applied
	// migrations. It is specific to extauthz so that the service can share a
	// database with another application that uses goose.
	VersionTable = "extauthz_schema_version"

	// LockID is the key of the PostgreSQL session advisory lock held while
	// migrations are applied (the CRC-32 of "extauthz").
	LockID int64 = 77731711
)

// Up applies every pending migration to the database at dsn and reports what
// it did to logw, one line per event (logw may be nil). It is idempotent: on
// an up-to-date database it changes nothing and returns nil.
//
// Up is safe to run from several processes at the same moment: the work is
// done under a PostgreSQL session advisory lock, and a process that had to
// wait for the lock finds the migrations already applied. A waiting process
// gives up after about five minutes, or earlier if ctx ends. Because the lock
// is held by a database session, dsn must reach PostgreSQL directly or
// through a pooler in session mode, never through PgBouncer in transaction
// mode.
//
// Errors never contain the password of dsn.
func Up(ctx context.Context, dsn string, logw io.Writer) error {
	if logw == nil {
		logw = io.Discard
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// The parser's message may quote the connection string, password
		// included, so it is not passed on.
		return errors.New("migrations: cannot parse the database URL")
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()

	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(LockID),
		// Poll every second, for up to five minutes.
		lock.WithLockTimeout(1, 300),
	)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, FS,
		goose.WithTableName(VersionTable),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
		goose.WithLogger(discardLogger{}),
	)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	results, err := p.Up(ctx)
	for _, r := range results {
		fmt.Fprintf(logw, "migrations: %s\n", r)
	}
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	version, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("migrations: read schema version: %w", err)
	}
	if len(results) == 0 {
		fmt.Fprintf(logw, "migrations: schema is up to date at version %d\n", version)
	} else {
		fmt.Fprintf(logw, "migrations: schema migrated to version %d\n", version)
	}
	return nil
}

// discardLogger silences goose, whose own messages Up replaces.
type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}

// Fatalf is never called by goose's Provider, which returns its errors.
func (discardLogger) Fatalf(string, ...any) {}
