package config

import (
	"fmt"
	"time"
)

// Cache defaults.
const (
	DefaultJWTCacheSize   = 10000
	DefaultTokenCacheSize = 20000
	DefaultStaleIfError   = 30 * time.Second
)

// Cache configures the in-memory caches of the Check's hot path: verified
// JWTs, and upstream token rows (kept consistent across replicas through
// PostgreSQL LISTEN/NOTIFY on database.direct_url).
type Cache struct {
	// Enabled turns both caches on or off. Default true.
	Enabled *bool `yaml:"enabled"`
	// JWTSize is how many verified JWTs are remembered; 0 disables the
	// JWT cache. Default 10000.
	JWTSize *int `yaml:"jwt_size"`
	// TokenSize is how many upstream token rows are remembered; 0 disables
	// the token cache (and its listener). Default 20000.
	TokenSize *int `yaml:"token_size"`
	// StaleIfError is how long cached upstream token rows keep answering
	// Checks while the database cannot be read (a failover, an outage),
	// counted from when the cache's listener last vouched for them; 0
	// turns this off (such Checks answer 503). Default 30s.
	StaleIfError Duration `yaml:"stale_if_error"`
}

// JWTEntries returns the size of the JWT cache, 0 when it is disabled.
func (c Cache) JWTEntries() int {
	if c.Enabled != nil && !*c.Enabled || c.JWTSize == nil {
		return 0
	}
	return *c.JWTSize
}

// TokenEntries returns the size of the upstream token cache, 0 when it is
// disabled.
func (c Cache) TokenEntries() int {
	if c.Enabled != nil && !*c.Enabled || c.TokenSize == nil {
		return 0
	}
	return *c.TokenSize
}

// cacheDefaults fills in the cache section and database.direct_url.
func (c *Config) cacheDefaults() {
	if c.Cache.JWTSize == nil {
		n := DefaultJWTCacheSize
		c.Cache.JWTSize = &n
	}
	if c.Cache.TokenSize == nil {
		n := DefaultTokenCacheSize
		c.Cache.TokenSize = &n
	}
	if c.Database.DirectURL == "" {
		c.Database.DirectURL = c.Database.URL
	}
	c.Cache.StaleIfError.orDefault(DefaultStaleIfError)
}

// validateCache checks the cache section and database.direct_url.
func (c *Config) validateCache() []string {
	var p []string
	if c.Cache.JWTSize != nil && *c.Cache.JWTSize < 0 {
		p = append(p, "cache.jwt_size must not be negative (0 disables the JWT cache)")
	}
	if c.Cache.TokenSize != nil && *c.Cache.TokenSize < 0 {
		p = append(p, "cache.token_size must not be negative (0 disables the token cache)")
	}
	if d := c.Database.DirectURL; d != "" && d != c.Database.URL && !validDatabaseURL(d) {
		p = append(p, "database.direct_url "+databaseURLRule)
	}
	if d := c.Cache.StaleIfError; d.bad != "" {
		p = append(p, fmt.Sprintf("line %d: cache.stale_if_error is not a duration (use e.g. 30s, 2m)", d.line))
	} else if d.D() < 0 {
		p = append(p, "cache.stale_if_error must not be negative (0 turns it off)")
	}
	return p
}
