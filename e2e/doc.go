// Package e2e holds end-to-end tests that run real extauthz server processes
// (built once from ./cmd/extauthz) against a real PostgreSQL database and a
// fake, rotating OAuth token endpoint. See the _test.go files; the package
// has no API.
//
// Run them with scripts/test ./e2e/ (or set EXTAUTHZ_TEST_DATABASE_URL).
// TestFailover also starts a primary and a standby of its own from the
// system's PostgreSQL binaries (pg_basebackup included); -short skips it.
// EXTAUTHZ_E2E_RACE=1 builds the server binary with the race detector.
package e2e
