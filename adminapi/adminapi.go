// Package adminapi is the session API of extauthz: the HTTP interface an
// authorization server (in any language) uses to store a session's upstream
// tokens, read their metadata and delete them, revoking them at the
// provider on the way out. It serves listen.admin, apart from the Check
// listeners and their trust.
//
// Routes (all JSON; errors are RFC 9457 problem details):
//
//	PUT    /v1/sessions/{session}/providers/{provider}  store the row (201 created, 200 replaced)
//	GET    /v1/sessions/{session}                        every row's metadata
//	GET    /v1/sessions/{session}/providers/{provider}   one row's metadata
//	DELETE /v1/sessions/{session}[?revoke=true]           delete every row (revoking first)
//	DELETE /v1/sessions/{session}/providers/{provider}[?revoke=true]
//	GET    /v1/openapi.json                              the OpenAPI document (no authentication)
//
// Every other route needs an authenticated caller (see Authenticator). A
// token is never returned, logged or put in an error: reads give its
// presence and length only, and each write and delete logs one audit line
// naming the caller, the operation, a hash of the session ID, the provider
// and the outcome.
package adminapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/extauthz/extauthz/store"
)

// Store is what the API needs of the token store: the sealed store of
// the service, so that rows written here are readable by Checks.
type Store interface {
	Put(ctx context.Context, row store.Row) error
	Get(ctx context.Context, sessionID, provider string) (store.Row, error)
	GetSession(ctx context.Context, sessionID string) ([]store.Row, error)
	Delete(ctx context.Context, sessionID, provider string) error
}

// Revoker revokes rows' tokens at their providers (RFC 7009) before they
// are deleted, and says per provider how it went.
type Revoker interface {
	Revoke(ctx context.Context, rows []store.Row) []Revocation
}

// Revocation is the outcome of revoking one row's tokens.
type Revocation struct {
	Provider string `json:"provider"`
	// Revoked is true when the provider confirmed the revocation.
	Revoked bool `json:"revoked"`
	// TokenType is the token sent: "refresh_token" or "access_token"
	// ("" when none was sent).
	TokenType string `json:"token_type,omitempty"`
	// Error is a short fixed word when Revoked is false: "unsupported"
	// (the provider has no revocation_url), "unavailable", "refused", ...
	Error string `json:"error,omitempty"`
}

// Options configures New. Store, Auth and Providers are required.
type Options struct {
	Store Store
	// Auth authenticates and authorizes every caller.
	Auth Authenticator
	// Providers are the configured provider names: a write for another
	// is refused.
	Providers []string
	// Revoker, when not nil, serves ?revoke=true; without it such a
	// request is refused (501).
	Revoker Revoker
	// Logger receives the audit lines and failures; nil discards them.
	Logger *slog.Logger
	// Now is the clock (expires_in); nil means time.Now.
	Now func() time.Time
	// OpenAPI is served at /v1/openapi.json; nil means the embedded
	// document (see OpenAPI).
	OpenAPI []byte
}

type api struct {
	opts  Options
	known map[string]bool
	log   *slog.Logger
	now   func() time.Time
}

// New returns the API's handler.
func New(opts Options) (http.Handler, error) {
	if opts.Store == nil || opts.Auth == nil {
		return nil, errors.New("adminapi: Store and Auth are required")
	}
	a := &api{opts: opts, known: map[string]bool{}, log: opts.Logger, now: opts.Now}
	for _, p := range opts.Providers {
		a.known[p] = true
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.opts.OpenAPI == nil {
		a.opts.OpenAPI = openAPIDocument
	}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/sessions/{session}/providers/{provider}", a.authed(opPut, a.put))
	mux.HandleFunc("GET /v1/sessions/{session}", a.authed(opGet, a.getSession))
	mux.HandleFunc("GET /v1/sessions/{session}/providers/{provider}", a.authed(opGet, a.getOne))
	mux.HandleFunc("DELETE /v1/sessions/{session}", a.authed(opDelete, a.delete))
	mux.HandleFunc("DELETE /v1/sessions/{session}/providers/{provider}", a.authed(opDelete, a.delete))
	mux.HandleFunc("GET /v1/openapi.json", a.openAPI)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, problem{Status: http.StatusNotFound, Detail: "no such resource"})
	})
	return recoverer(mux, a.log), nil
}

// Operation names, in audit lines.
const (
	opPut    = "put"
	opGet    = "get"
	opDelete = "delete"
)

// handlerFunc is a route's handler once the caller is known. It returns
// the status it answered and, for the audit line, the provider concerned.
type handlerFunc func(w http.ResponseWriter, r *http.Request, c Caller) int

// authed authenticates the caller, runs h, and writes the audit line of a
// write or delete (reads are not audited).
func (a *api) authed(op string, h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := a.opts.Auth.Authenticate(r)
		var status int
		if err != nil {
			status = writeAuthError(w, err)
		} else {
			status = h(w, r, c)
		}
		if op == opGet && err == nil {
			return
		}
		a.log.InfoContext(r.Context(), "audit",
			"operation", op,
			"caller", c.String(),
			"session_hash", SessionHash(r.PathValue("session")),
			"provider", a.providerForLog(r.PathValue("provider")),
			"status", status,
			"authenticated", err == nil)
	}
}

// providerForLog is p when it is a configured provider: a caller's path
// is not written into the log as it is.
func (a *api) providerForLog(p string) string {
	if p == "" || a.known[p] {
		return p
	}
	return "(unknown)"
}

// SessionHash is how logs name a session: the first 8 bytes of the SHA-256
// of its ID, in hex.
func SessionHash(session string) string {
	if session == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(session))
	return hex.EncodeToString(sum[:8])
}

func (a *api) put(w http.ResponseWriter, r *http.Request, _ Caller) int {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return writeProblem(w, problem{Status: http.StatusUnsupportedMediaType, Detail: "the body must be application/json"})
		}
	}
	body, err := DecodeSessionWrite(r.Body)
	if err != nil {
		return writeInputError(w, err)
	}
	session, provider := r.PathValue("session"), r.PathValue("provider")
	row, err := body.Row(session, provider, func(p string) bool { return a.known[p] }, a.now())
	if err != nil {
		return writeInputError(w, err)
	}
	status := http.StatusOK
	if _, err := a.opts.Store.Get(r.Context(), session, provider); errors.Is(err, store.ErrNotFound) {
		status = http.StatusCreated
	} else if err != nil && !errors.Is(err, store.ErrUnreadable) {
		// A row that cannot be decrypted is replaced all the same.
		return a.writeStoreError(r.Context(), w, err)
	}
	if err := a.opts.Store.Put(r.Context(), row); err != nil {
		return a.writeStoreError(r.Context(), w, err)
	}
	return writeJSON(w, status, metadata(row))
}

func (a *api) getSession(w http.ResponseWriter, r *http.Request, _ Caller) int {
	session := r.PathValue("session")
	if err := CheckSessionID(session); err != nil {
		return writeInputError(w, err)
	}
	rows, err := a.opts.Store.GetSession(r.Context(), session)
	if err != nil {
		return a.writeStoreError(r.Context(), w, err)
	}
	if len(rows) == 0 {
		return writeProblem(w, problem{Status: http.StatusNotFound, Detail: "no tokens are stored for this session"})
	}
	out := sessionMetadata{Session: session, Providers: make([]rowMetadata, len(rows))}
	for i, row := range rows {
		out.Providers[i] = metadata(row)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *api) getOne(w http.ResponseWriter, r *http.Request, _ Caller) int {
	session, provider := r.PathValue("session"), r.PathValue("provider")
	if err := CheckSessionID(session); err != nil {
		return writeInputError(w, err)
	}
	row, err := a.opts.Store.Get(r.Context(), session, provider)
	if errors.Is(err, store.ErrNotFound) {
		return writeProblem(w, problem{Status: http.StatusNotFound, Detail: "no tokens are stored for this session and provider"})
	}
	if err != nil {
		return a.writeStoreError(r.Context(), w, err)
	}
	return writeJSON(w, http.StatusOK, metadata(row))
}

// deleteResult is the answer to a DELETE with ?revoke=true.
type deleteResult struct {
	Deleted     int          `json:"deleted"`
	Revocations []Revocation `json:"revocations"`
}

func (a *api) delete(w http.ResponseWriter, r *http.Request, _ Caller) int {
	session, provider := r.PathValue("session"), r.PathValue("provider")
	if err := CheckSessionID(session); err != nil {
		return writeInputError(w, err)
	}
	revoke := false
	switch v := r.URL.Query().Get("revoke"); v {
	case "", "false":
	case "true":
		revoke = true
	default:
		return writeInputError(w, &InputError{Fields: []FieldError{{"revoke", "must be true or false"}}})
	}
	if revoke && a.opts.Revoker == nil {
		return writeProblem(w, problem{Status: http.StatusNotImplemented, Detail: "revocation is not available"})
	}
	var rows []store.Row
	var err error
	if provider == "" {
		rows, err = a.opts.Store.GetSession(r.Context(), session)
	} else {
		var row store.Row
		if row, err = a.opts.Store.Get(r.Context(), session, provider); err == nil {
			rows = []store.Row{row}
		} else if errors.Is(err, store.ErrNotFound) {
			err = nil
		}
	}
	if err != nil && !(errors.Is(err, store.ErrUnreadable) && !revoke) {
		return a.writeStoreError(r.Context(), w, err)
	}
	res := deleteResult{Revocations: []Revocation{}}
	if revoke && len(rows) > 0 {
		res.Revocations = a.opts.Revoker.Revoke(r.Context(), rows)
		for _, rv := range res.Revocations {
			if !rv.Revoked {
				a.log.WarnContext(r.Context(), "revocation failed; the tokens are deleted all the same",
					"session_hash", SessionHash(session), "provider", rv.Provider, "error", rv.Error)
			}
		}
	}
	if err := a.opts.Store.Delete(r.Context(), session, provider); err != nil {
		return a.writeStoreError(r.Context(), w, err)
	}
	res.Deleted = len(rows)
	return writeJSON(w, http.StatusOK, res)
}

// tokenInfo describes a stored token without revealing it.
type tokenInfo struct {
	Present bool `json:"present"`
	Length  int  `json:"length"`
}

func info(token string) tokenInfo { return tokenInfo{Present: token != "", Length: len(token)} }

// rowMetadata is a row as the API shows it: everything but the tokens.
type rowMetadata struct {
	Provider         string    `json:"provider"`
	Subject          string    `json:"subject"`
	ClientID         string    `json:"client_id"`
	UpstreamSubject  string    `json:"upstream_subject,omitempty"`
	TokenType        string    `json:"token_type"`
	AccessToken      tokenInfo `json:"access_token"`
	RefreshToken     tokenInfo `json:"refresh_token"`
	IDToken          tokenInfo `json:"id_token"`
	ExpiresAt        *string   `json:"expires_at"`
	SessionExpiresAt *string   `json:"session_expires_at"`
	NeedsReauth      bool      `json:"needs_reauth"`
	UpdatedAt        *string   `json:"updated_at,omitempty"`
}

type sessionMetadata struct {
	Session   string        `json:"session"`
	Providers []rowMetadata `json:"providers"`
}

func metadata(r store.Row) rowMetadata {
	return rowMetadata{
		Provider: r.Provider, Subject: r.Subject, ClientID: r.ClientID, UpstreamSubject: r.UpstreamSubject,
		TokenType:   r.TokenType,
		AccessToken: info(r.AccessToken), RefreshToken: info(r.RefreshToken), IDToken: info(r.IDToken),
		ExpiresAt: timeOrNull(r.ExpiresAt), SessionExpiresAt: timeOrNull(r.SessionExpiresAt),
		NeedsReauth: r.NeedsReauth, UpdatedAt: timeOrNull(r.UpdatedAt),
	}
}

func timeOrNull(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339Nano)
	return &s
}

func writeJSON(w http.ResponseWriter, status int, v any) int {
	body, err := json.Marshal(v)
	if err != nil {
		return writeProblem(w, problem{Status: http.StatusInternalServerError, Detail: "internal error"})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return status
}

// writeStoreError answers a store failure: 503 (with Retry-After) when the
// store is unavailable, 400 when it refused the input, 500 otherwise. The
// error is logged by kind; the store's errors never hold tokens.
func (a *api) writeStoreError(ctx context.Context, w http.ResponseWriter, err error) int {
	switch {
	case errors.Is(err, store.ErrUnavailable):
		w.Header().Set("Retry-After", "5")
		a.log.WarnContext(ctx, "token store unavailable", "error", err)
		return writeProblem(w, problem{Status: http.StatusServiceUnavailable, Detail: "the token store is unavailable; retry later"})
	case errors.Is(err, store.ErrInvalid):
		return writeProblem(w, problem{Status: http.StatusBadRequest, Detail: "the token store refused the input"})
	case errors.Is(err, store.ErrUnreadable):
		a.log.ErrorContext(ctx, "stored tokens cannot be decrypted", "error", err)
		return writeProblem(w, problem{Status: http.StatusInternalServerError, Detail: "the stored tokens cannot be decrypted"})
	}
	a.log.ErrorContext(ctx, "token store failed", "error", err)
	return writeProblem(w, problem{Status: http.StatusInternalServerError, Detail: "internal error"})
}

// recoverer answers 500 for a panic, logging its type and stack, never
// its value (which could hold a token).
func recoverer(h http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				log.ErrorContext(r.Context(), "panic in session API handler",
					"panic_type", fmt.Sprintf("%T", p), "stack", string(debug.Stack()))
				writeProblem(w, problem{Status: http.StatusInternalServerError, Detail: "internal error"})
			}
		}()
		h.ServeHTTP(w, r)
	})
}
