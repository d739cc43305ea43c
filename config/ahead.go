package config

import (
	"fmt"
	"time"

	"github.com/extauthz/extauthz/upstreamtoken"
)

// Refresh-ahead defaults.
const (
	DefaultAheadWindow = 10 * time.Minute
	// DefaultAheadLead is how much the default refresh.ahead.margin exceeds
	// refresh.skew: the margin is 2m with the default 30s skew.
	DefaultAheadLead        = 90 * time.Second
	DefaultAheadConcurrency = 4
	DefaultAheadMaxSessions = 100000
	// AheadInterval is how often the record of served sessions is scanned
	// for tokens due.
	AheadInterval = time.Second
)

// Ahead configures refreshing, in the background, the upstream tokens of
// sessions served recently, before a Check finds them expired (see
// docs/refresh.md).
type Ahead struct {
	// Enabled turns refresh ahead on or off. Default true.
	Enabled *bool `yaml:"enabled"`
	// Window: only sessions this replica served within the window are
	// refreshed ahead. Default 10m.
	Window Duration `yaml:"window"`
	// Margin: a served session's token is refreshed when it comes within
	// a lead of its expiry spread (by a hash of the session) between
	// refresh.skew and the margin. It must exceed refresh.skew. Default
	// refresh.skew + 90s (2m with the default skew).
	Margin Duration `yaml:"margin"`
	// Concurrency bounds this replica's background refreshes in flight per
	// provider. Default 4.
	Concurrency int `yaml:"concurrency"`
	// MaxSessions bounds the record of served sessions (one entry per
	// session and provider, about 150 bytes); the least recently served are
	// forgotten first. Default 100000.
	MaxSessions int `yaml:"max_sessions"`
}

// On reports whether refresh ahead is enabled.
func (a Ahead) On() bool { return a.Enabled == nil || *a.Enabled }

// Options returns the upstreamtoken settings of refresh ahead.
func (a Ahead) Options() upstreamtoken.Ahead {
	return upstreamtoken.Ahead{Window: a.Window.D(), Margin: a.Margin.D(), Concurrency: a.Concurrency,
		MaxEntries: a.MaxSessions, Interval: AheadInterval}
}

// aheadDefaults fills in refresh.ahead, after refresh.skew.
func (c *Config) aheadDefaults() {
	a := &c.Refresh.Ahead
	a.Window.orDefault(DefaultAheadWindow)
	a.Margin.orDefault(c.Refresh.Skew.D() + DefaultAheadLead)
	if a.Concurrency == 0 {
		a.Concurrency = DefaultAheadConcurrency
	}
	if a.MaxSessions == 0 {
		a.MaxSessions = DefaultAheadMaxSessions
	}
}

// validateAhead checks refresh.ahead.
func (c *Config) validateAhead() []string {
	a := c.Refresh.Ahead
	var p []string
	for _, d := range []struct {
		key string
		d   Duration
	}{{"refresh.ahead.window", a.Window}, {"refresh.ahead.margin", a.Margin}} {
		if d.d.bad != "" {
			p = append(p, fmt.Sprintf("line %d: %s is not a duration (use e.g. 30s, 2m)", d.d.line, d.key))
		}
	}
	if !a.On() {
		return p
	}
	if a.Window.D() <= 0 {
		p = append(p, "refresh.ahead.window must be positive")
	}
	if a.Margin.D() <= c.Refresh.Skew.D() {
		p = append(p, fmt.Sprintf("refresh.ahead.margin must exceed refresh.skew (%v): tokens are refreshed ahead within the margin, by Checks within the skew", c.Refresh.Skew.D()))
	}
	if a.Concurrency < 1 {
		p = append(p, "refresh.ahead.concurrency must be at least 1")
	}
	if a.MaxSessions < 1 {
		p = append(p, "refresh.ahead.max_sessions must be at least 1")
	}
	return p
}
