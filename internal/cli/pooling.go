package cli

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/store/postgres"
)

// poolingProbeTimeout bounds each probe of refusePooling, so that a
// database that does not answer delays the start by little.
const poolingProbeTimeout = 5 * time.Second

// refusePooling probes database.url and, when the token cache is on,
// database.direct_url for a connection pooler (postgres.ProbePooling), and
// refuses, with a usage error naming the setting, what cannot work behind
// the pooler it finds:
//   - database.url through a pooler in transaction mode that passes
//     prepared statements through untracked (PgBouncer 1.18, as Debian 12
//     ships it), unless the URL's default_query_exec_mode prepares none;
//   - database.direct_url (database.url unless set) through a pooler in
//     transaction mode: the token cache's LISTEN would be lost, and the
//     cache would serve rows changed elsewhere.
//
// The probe proves sharing when it sees it; under load a pooler may hide it
// (see postgres.ProbePooling), and then nothing is refused. When a database
// cannot be reached, refusePooling logs that and refuses nothing: serve
// starts while PostgreSQL is down.
func refusePooling(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	probe := func(setting, dsn string) (postgres.Pooling, bool) {
		pctx, cancel := context.WithTimeout(ctx, poolingProbeTimeout)
		defer cancel()
		p, err := postgres.ProbePooling(pctx, dsn)
		if err != nil {
			log.Warn(setting+": could not check for a connection pooler in transaction mode", "error", err)
			return p, false
		}
		return p, true
	}
	p, ok := probe("database.url", cfg.Database.URL)
	if ok && p.SharedPreparedStatements && p.PreparesStatements() {
		return fmt.Errorf("%w: database.url reaches PostgreSQL through a pooler in transaction mode that does not track "+
			"prepared statements (PgBouncer before 1.21, or max_prepared_statements = 0): add default_query_exec_mode=exec to database.url",
			errUsage)
	}
	if cfg.Cache.TokenEntries() == 0 {
		return nil
	}
	setting := "database.direct_url (database.url, as it is not set)"
	if cfg.Database.DirectURL != cfg.Database.URL {
		setting = "database.direct_url"
		p, ok = probe(setting, cfg.Database.DirectURL)
	}
	if ok && p.SharedSessions {
		return fmt.Errorf("%w: %s reaches PostgreSQL through a pooler in transaction mode (two connections shared one server session): "+
			"the token cache's LISTEN needs a session of its own; set database.direct_url to a URL that reaches PostgreSQL directly "+
			"(or turn the token cache off with cache.token_size: 0)", errUsage, setting)
	}
	return nil
}

// refuseMigratingThroughPooler refuses, with a usage error, to run the
// migrations on a dsn that reaches PostgreSQL through a pooler in
// transaction mode: they run under a session advisory lock, which such a
// pooler would take on one server session and try to release on another.
// When the database cannot be reached it refuses nothing (the migration
// reports that).
func refuseMigratingThroughPooler(ctx context.Context, dsn string) error {
	pctx, cancel := context.WithTimeout(ctx, poolingProbeTimeout)
	defer cancel()
	if p, err := postgres.ProbePooling(pctx, dsn); err == nil && p.SharedSessions {
		return fmt.Errorf("%w: the database URL reaches PostgreSQL through a pooler in transaction mode (two connections shared "+
			"one server session): migrations hold a session advisory lock; give migrate a URL that reaches PostgreSQL directly", errUsage)
	}
	return nil
}
