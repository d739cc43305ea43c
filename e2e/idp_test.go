//go:build unix

package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"
)

// answer scripts the token endpoint's reply for one session.
type answer int

const (
	// answerRotate is the default: a single-use refresh token is exchanged
	// for a new access token and a new refresh token of the same family.
	answerRotate answer = iota
	// answerInvalidGrant refuses the refresh token (400 invalid_grant).
	answerInvalidGrant
	// answerInvalidClient rejects our client credentials (401
	// invalid_client); the refresh token is not consumed.
	answerInvalidClient
	// answerUnavailable is a 503 with Retry-After: 2; the refresh token is
	// not consumed.
	answerUnavailable
	// answerSlow answers only after the caller gave up (its connection
	// closed), so slower than any refresh.timeout; nothing is consumed.
	answerSlow
	// answerCode refuses with HTTP 400 and the session's code (see
	// setCode); the refresh token is not consumed.
	answerCode
)

// holdPhase says where a hold stops a request.
type holdPhase int

const (
	// holdBeforeProcessing blocks the request before the provider looks at
	// it: released with false, it is dropped (connection aborted) as if it
	// had never reached the provider.
	holdBeforeProcessing holdPhase = iota
	// holdAfterProcessing lets the provider redeem the token (rotate, detect
	// reuse...) and blocks before the answer is written.
	holdAfterProcessing
)

// hold blocks the next request for one session (see idp.holdNext).
type hold struct {
	phase   holdPhase
	arrived chan struct{}
	release chan bool
	handled chan struct{} // closed once the held request is answered or dropped

	// set before arrived is closed, for holdAfterProcessing with a rotation:
	// the tokens the held answer carries.
	issuedAccess, issuedRefresh string
}

// waitArrived waits until the held request reached the provider.
func (h *hold) waitArrived(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-h.arrived:
	case <-time.After(d):
		t.Fatalf("no token request reached the provider within %v", d)
	}
}

// waitHandled waits until the held request was answered or dropped.
func (h *hold) waitHandled(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-h.handled:
	case <-time.After(d):
		t.Fatalf("the held token request was not finished within %v", d)
	}
}

// Release lets the held request go on (process=true) or drops it.
func (h *hold) Release(process bool) {
	select {
	case h.release <- process:
	default:
	}
}

// idpSession is one login's token family at the provider.
type idpSession struct {
	id          string
	redemptions int // token requests processed for this family (any answer)
	rotations   int // successful exchanges
	reuses      int // redemptions of an already redeemed refresh token
	dropped     int // requests dropped by a hold before processing
	revoked     bool
	script      answer
	code        string // the OAuth error code of answerCode
	access      string // latest access token issued
	refresh     string // latest refresh token issued
}

type refreshToken struct {
	sess *idpSession
	used bool
}

// idp is a provider token endpoint that rotates refresh tokens: each is
// single-use, and redeeming one again is reuse, which revokes the whole
// family and is answered with invalid_grant. It counts redemptions per
// session and overall, and records every token it ever issued.
type idp struct {
	clientID, clientSecret string
	// idToken, when set, signs an ID token into every successful answer;
	// it is given the session ID.
	idToken func(session string) string

	mu       sync.Mutex
	latency  time.Duration
	lifetime time.Duration // expires_in of the access tokens issued; 0 means an hour
	tokens   map[string]*refreshToken
	sessions map[string]*idpSession
	holds    map[string]*hold
	total    int // redemptions processed, all sessions
	unknown  int // requests with a refresh token the provider never issued
	issued   []string
}

func newIDP(clientID, clientSecret string) *idp {
	return &idp{
		clientID: clientID, clientSecret: clientSecret,
		tokens:   map[string]*refreshToken{},
		sessions: map[string]*idpSession{},
		holds:    map[string]*hold{},
	}
}

func randomHex() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Tokens look like e2eAT<24 hex> and e2eRT<24 hex>; see assertNoSecrets.
func newAccessToken() string  { return "e2eAT" + randomHex() }
func newRefreshToken() string { return "e2eRT" + randomHex() }

// login starts a token family for session and returns its first pair.
func (p *idp) login(session string) (access, refresh string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.sessions[session]; ok {
		panic("idp: session " + session + " logged in twice")
	}
	access, refresh = newAccessToken(), newRefreshToken()
	s := &idpSession{id: session, access: access, refresh: refresh}
	p.sessions[session] = s
	p.tokens[refresh] = &refreshToken{sess: s}
	p.issued = append(p.issued, access, refresh)
	return access, refresh
}

// setLatency delays every answer by d.
func (p *idp) setLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

// setLifetime makes the access tokens issued from now on expire d after
// they are issued (an hour by default).
func (p *idp) setLifetime(d time.Duration) {
	p.mu.Lock()
	p.lifetime = d
	p.mu.Unlock()
}

// setScript makes the provider answer session's requests with a.
func (p *idp) setScript(session string, a answer) {
	p.mu.Lock()
	p.sessions[session].script = a
	p.mu.Unlock()
}

// setCode makes the provider refuse session's requests with code.
func (p *idp) setCode(session, code string) {
	p.mu.Lock()
	p.sessions[session].script = answerCode
	p.sessions[session].code = code
	p.mu.Unlock()
}

// holdNext blocks the next request for session at phase until released.
func (p *idp) holdNext(session string, phase holdPhase) *hold {
	h := &hold{phase: phase, arrived: make(chan struct{}), release: make(chan bool, 1), handled: make(chan struct{})}
	p.mu.Lock()
	p.holds[session] = h
	p.mu.Unlock()
	return h
}

// session returns a copy of session's state.
func (p *idp) session(session string) idpSession {
	p.mu.Lock()
	defer p.mu.Unlock()
	return *p.sessions[session]
}

func (p *idp) totals() (redemptions, unknown int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total, p.unknown
}

func (p *idp) totalReuses() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.sessions {
		n += s.reuses
	}
	return n
}

// allIssued returns every token the provider ever issued.
func (p *idp) allIssued() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.issued...)
}

type tokenReply struct {
	status     int
	retryAfter string
	body       any
}

func oauthError(status int, code string) tokenReply {
	return tokenReply{status: status, body: map[string]string{"error": code, "error_description": "e2e provider: " + code}}
}

func (p *idp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/token" {
		http.NotFound(w, r)
		return
	}
	if err := r.ParseForm(); err != nil {
		writeReply(w, oauthError(400, "invalid_request"))
		return
	}
	if r.PostForm.Get("grant_type") != "refresh_token" {
		writeReply(w, oauthError(400, "unsupported_grant_type"))
		return
	}
	if r.PostForm.Get("client_id") != p.clientID || r.PostForm.Get("client_secret") != p.clientSecret {
		writeReply(w, oauthError(401, "invalid_client"))
		return
	}
	rt := r.PostForm.Get("refresh_token")

	p.mu.Lock()
	tok := p.tokens[rt]
	if tok == nil {
		p.unknown++
		p.mu.Unlock()
		writeReply(w, oauthError(400, "invalid_grant"))
		return
	}
	s := tok.sess
	h := p.holds[s.id]
	delete(p.holds, s.id)
	latency := p.latency
	p.mu.Unlock()
	if h != nil {
		defer close(h.handled)
	}

	if h != nil && h.phase == holdBeforeProcessing {
		close(h.arrived)
		if !h.wait() {
			p.mu.Lock()
			s.dropped++
			p.mu.Unlock()
			panic(http.ErrAbortHandler) // never processed, never answered
		}
	}
	if latency > 0 {
		select {
		case <-time.After(latency):
		case <-r.Context().Done():
		}
	}

	p.mu.Lock()
	s.redemptions++
	p.total++
	var reply tokenReply
	switch s.script {
	case answerInvalidGrant:
		reply = oauthError(400, "invalid_grant")
	case answerInvalidClient:
		reply = oauthError(401, "invalid_client")
	case answerUnavailable:
		reply = oauthError(503, "temporarily_unavailable")
		reply.retryAfter = "2"
	case answerCode:
		reply = oauthError(400, s.code)
	case answerSlow:
		p.mu.Unlock()
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
		writeReply(w, oauthError(503, "temporarily_unavailable"))
		return
	default:
		switch {
		case tok.used:
			// Reuse: the whole family is revoked.
			s.reuses++
			s.revoked = true
			reply = oauthError(400, "invalid_grant")
		case s.revoked:
			reply = oauthError(400, "invalid_grant")
		default:
			tok.used = true
			s.rotations++
			s.access, s.refresh = newAccessToken(), newRefreshToken()
			p.tokens[s.refresh] = &refreshToken{sess: s}
			p.issued = append(p.issued, s.access, s.refresh)
			lifetime := time.Hour
			if p.lifetime > 0 {
				lifetime = p.lifetime
			}
			body := map[string]any{
				"access_token": s.access, "refresh_token": s.refresh, "token_type": "Bearer", "expires_in": int(lifetime.Seconds()),
			}
			if p.idToken != nil {
				body["id_token"] = p.idToken(s.id)
			}
			reply = tokenReply{status: 200, body: body}
			if h != nil {
				h.issuedAccess, h.issuedRefresh = s.access, s.refresh
			}
		}
	}
	p.mu.Unlock()

	if h != nil && h.phase == holdAfterProcessing {
		close(h.arrived)
		if !h.wait() {
			panic(http.ErrAbortHandler)
		}
	}
	writeReply(w, reply)
}

// wait blocks until the hold is released; a hold nobody releases ends after
// a minute (processed) so that a failing test cannot hang the server.
func (h *hold) wait() bool {
	select {
	case v := <-h.release:
		return v
	case <-time.After(time.Minute):
		return true
	}
}

func writeReply(w http.ResponseWriter, r tokenReply) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if r.retryAfter != "" {
		w.Header().Set("Retry-After", r.retryAfter)
	}
	w.WriteHeader(r.status)
	_ = json.NewEncoder(w).Encode(r.body)
}
