package config

import (
	"strings"
	"testing"
	"time"
)

func TestAheadSection(t *testing.T) {
	getenv := env(map[string]string{"DB": "postgres://file/x", "GH_SECRET": "x"})
	for _, tt := range []struct {
		name    string
		yaml    string // lines under refresh.ahead
		skew    string // refresh.skew; default 1m
		on      bool
		window  time.Duration
		margin  time.Duration
		conc    int
		max     int
		problem string
	}{
		{name: "defaults", on: true, window: DefaultAheadWindow, margin: time.Minute + DefaultAheadLead, conc: DefaultAheadConcurrency, max: DefaultAheadMaxSessions},
		{name: "set", yaml: "    window: 5m\n    margin: 3m\n    concurrency: 2\n    max_sessions: 10\n", on: true,
			window: 5 * time.Minute, margin: 3 * time.Minute, conc: 2, max: 10},
		{name: "off", yaml: "    enabled: false\n    margin: 1s\n", window: DefaultAheadWindow, margin: time.Second, conc: DefaultAheadConcurrency, max: DefaultAheadMaxSessions},
		{name: "default margin follows a long skew", yaml: "    window: 5m\n", skew: "2h", on: true,
			window: 5 * time.Minute, margin: 2*time.Hour + DefaultAheadLead, conc: DefaultAheadConcurrency, max: DefaultAheadMaxSessions},
		{name: "margin within skew", yaml: "    margin: 1m\n", problem: "refresh.ahead.margin must exceed refresh.skew (1m0s)"},
		{name: "negative window", yaml: "    window: -1m\n", problem: "refresh.ahead.window must be positive"},
		{name: "concurrency", yaml: "    concurrency: -1\n", problem: "refresh.ahead.concurrency must be at least 1"},
		{name: "max sessions", yaml: "    max_sessions: -5\n", problem: "refresh.ahead.max_sessions must be at least 1"},
		{name: "not a duration", yaml: "    margin: soon\n", problem: "refresh.ahead.margin is not a duration"},
		{name: "unknown key", yaml: "    size: 3\n", problem: `unknown key "refresh.ahead.size"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			skew := "1m"
			if tt.skew != "" {
				skew = tt.skew
			}
			section := "refresh:\n  skew: " + skew + "\n"
			if tt.yaml != "" {
				section += "  ahead:\n" + tt.yaml
			}
			text := strings.Replace(valid, "refresh:\n  skew: 1m\n", section, 1)
			c, err := Parse([]byte(text), getenv)
			if tt.problem != "" {
				if err == nil || !strings.Contains(err.Error(), tt.problem) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			a := c.Refresh.Ahead
			o := a.Options()
			if a.On() != tt.on || o.Window != tt.window || o.Margin != tt.margin || o.Concurrency != tt.conc || o.MaxEntries != tt.max || o.Interval != AheadInterval {
				t.Errorf("on %v, options %+v; want on %v, window %v, margin %v, concurrency %d, max %d", a.On(), o, tt.on, tt.window, tt.margin, tt.conc, tt.max)
			}
		})
	}
}
