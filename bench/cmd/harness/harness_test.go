package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	lat := make([]time.Duration, 1000)
	for i := range lat {
		lat[i] = time.Duration(i+1) * time.Millisecond
	}
	for p, want := range map[float64]time.Duration{50: 500 * time.Millisecond, 99: 990 * time.Millisecond, 99.9: 999 * time.Millisecond, 100: time.Second} {
		if got := percentile(lat, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if got := percentile(lat[:1], 99.9); got != time.Millisecond {
		t.Errorf("p99.9 of one = %v", got)
	}
}

// TestTokenEndpointRotates checks the storm's bookkeeping: a refresh token
// is redeemed once, its successor works, a spent one or one from another
// epoch is refused and counted.
func TestTokenEndpointRotates(t *testing.T) {
	e, err := startTokenEndpoint(time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	e.reset(3)
	redeem := func(rt string) (int, map[string]any) {
		t.Helper()
		resp, err := http.PostForm(e.url, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}
	if code, body := redeem("rt.s1.3.0"); code != 200 || body["access_token"] != "at.s1.3.1" || body["refresh_token"] != "rt.s1.3.1" {
		t.Fatalf("first redemption: %d %v", code, body)
	}
	if code, body := redeem("rt.s1.3.0"); code != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("reuse: %d %v", code, body)
	}
	if code, _ := redeem("rt.s1.3.1"); code != 200 {
		t.Fatalf("successor: %d", code)
	}
	if code, _ := redeem("rt.s2.2.0"); code != 400 {
		t.Fatalf("old epoch: %d", code)
	}
	red, refused, malformed := e.counts()
	if red["s1"] != 2 || len(red) != 1 || refused != 2 || malformed != 0 {
		t.Fatalf("counts: %v refused %d malformed %d", red, refused, malformed)
	}
}

func TestProcReaders(t *testing.T) {
	pid := os.Getpid()
	if _, err := cpuSeconds(pid); err != nil {
		t.Fatal(err)
	}
	if rss, err := peakRSS(pid); err != nil || rss <= 0 {
		t.Fatalf("peak RSS %d, %v", rss, err)
	}
	if _, _, err := systemCPU(); err != nil {
		t.Fatal(err)
	}
	if _, err := treeCPUSeconds(pid); err != nil {
		t.Fatal(err)
	}
}

func TestProtoset(t *testing.T) {
	if err := writeProtoset(t.TempDir() + "/p"); err != nil {
		t.Fatal(err)
	}
}
