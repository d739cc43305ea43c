package cli

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/internal/pgtest"
)

// TestRefusePooling shows what serve refuses behind PgBouncer 1.18 in
// transaction mode, and what it accepts: the settings docs/operations.md
// documents.
func TestRefusePooling(t *testing.T) {
	dsn := pgtest.New(t)
	bouncer := pgtest.PgBouncer(t, dsn) // with default_query_exec_mode=exec
	preparing := strings.Replace(bouncer, "default_query_exec_mode=exec", "default_query_exec_mode=cache_statement", 1)
	tests := []struct {
		name, url, direct string
		tokenCache        int
		refused           string // a word of the refusal; "" for none
	}{
		{"direct", dsn, "", 100, ""},
		{"as documented", bouncer, dsn, 100, ""},
		{"prepared statements", preparing, dsn, 100, "add default_query_exec_mode=exec to database.url"},
		{"LISTEN by default through PgBouncer", bouncer, "", 100, "database.direct_url (database.url, as it is not set) reaches"},
		{"LISTEN through PgBouncer", bouncer, bouncer, 100, "set database.direct_url to a URL that reaches PostgreSQL directly"},
		{"no token cache", bouncer, "", 0, ""},
		{"unreachable", "postgres://postgres@127.0.0.1:1/x?connect_timeout=2", "", 100, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &config.Config{}
			cfg.Database.URL, cfg.Database.DirectURL = tt.url, tt.direct
			if tt.direct == "" {
				cfg.Database.DirectURL = tt.url
			}
			cfg.Cache.TokenSize = &tt.tokenCache
			err := refusePooling(t.Context(), cfg, slog.New(slog.DiscardHandler))
			switch {
			case tt.refused == "" && err != nil:
				t.Errorf("refusePooling = %v, want nil", err)
			case tt.refused != "" && (!errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.refused)):
				t.Errorf("refusePooling = %v, want a usage error saying %q", err, tt.refused)
			}
		})
	}
}
