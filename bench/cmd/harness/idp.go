package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// tokenEndpoint is a provider's OAuth token endpoint for the refresh storm:
// it answers refresh_token grants after a fixed latency, rotates the refresh
// token on every redemption (a second use of a refresh token is refused with
// invalid_grant, as Okta, Auth0 or Dex do) and counts redemptions per
// session.
//
// Tokens name their session and generation: the seeder writes
// "rt.<session>.<epoch>.0" and the endpoint hands out
// "at.<session>.<epoch>.<n>" and "rt.<session>.<epoch>.<n>" on the n-th
// redemption. reset starts a new epoch: tokens of older epochs are refused.
type tokenEndpoint struct {
	latency time.Duration
	srv     *http.Server
	url     string

	mu          sync.Mutex
	epoch       int
	gen         map[string]int // session -> generation of its current refresh token
	redemptions map[string]int // session -> redemptions in this epoch
	refused     int            // refresh tokens presented that were not current
	malformed   int
	served      []stamp // each redemption: when it was answered, and the latency served
}

func startTokenEndpoint(latency time.Duration) (*tokenEndpoint, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e := &tokenEndpoint{latency: latency, url: "http://" + lis.Addr().String() + "/token"}
	e.reset(0)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", e.serveToken)
	e.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = e.srv.Serve(lis) }()
	return e, nil
}

func (e *tokenEndpoint) close() { _ = e.srv.Close() }

// reset starts epoch: counts are cleared and only refresh tokens
// "rt.<session>.<epoch>.0" (then their successors) are accepted.
func (e *tokenEndpoint) reset(epoch int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.epoch = epoch
	e.gen = map[string]int{}
	e.redemptions = map[string]int{}
	e.refused, e.malformed = 0, 0
	e.served = nil
}

// redemptionStamps returns this epoch's redemptions: when each was
// answered and how long the endpoint took, from the request's arrival.
func (e *tokenEndpoint) redemptionStamps() []stamp {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.served)
}

// counts returns the redemptions per session and the refusals of this epoch.
func (e *tokenEndpoint) counts() (redemptions map[string]int, refused, malformed int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	redemptions = make(map[string]int, len(e.redemptions))
	for k, v := range e.redemptions {
		redemptions[k] = v
	}
	return redemptions, e.refused, e.malformed
}

func (e *tokenEndpoint) serveToken(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "refresh_token" {
		e.answerError(w, "invalid_request", true)
		return
	}
	time.Sleep(e.latency)

	parts := strings.Split(r.PostForm.Get("refresh_token"), ".")
	if len(parts) != 4 || parts[0] != "rt" {
		e.answerError(w, "invalid_grant", true)
		return
	}
	sid := parts[1]
	epoch, err1 := strconv.Atoi(parts[2])
	gen, err2 := strconv.Atoi(parts[3])
	if err1 != nil || err2 != nil {
		e.answerError(w, "invalid_grant", true)
		return
	}

	e.mu.Lock()
	if epoch != e.epoch || gen != e.gen[sid] {
		e.refused++
		e.mu.Unlock()
		e.answerError(w, "invalid_grant", false)
		return
	}
	gen++
	e.gen[sid] = gen
	e.redemptions[sid]++
	now := time.Now()
	e.served = append(e.served, stamp{end: now, latency: now.Sub(arrived)})
	e.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token":  fmt.Sprintf("at.%s.%d.%d", sid, epoch, gen),
		"token_type":    "Bearer",
		"expires_in":    3600,
		"refresh_token": fmt.Sprintf("rt.%s.%d.%d", sid, epoch, gen),
	})
}

func (e *tokenEndpoint) answerError(w http.ResponseWriter, code string, malformed bool) {
	if malformed {
		e.mu.Lock()
		e.malformed++
		e.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
}
