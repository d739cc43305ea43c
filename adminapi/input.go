package adminapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/extauthz/extauthz/store"
)

// Limits on what a session write may hold. A token longer than MaxTokenBytes
// is refused rather than stored: it would not fit in a request header of the
// proxies that forward it anyway.
const (
	MaxNameBytes  = 512       // session, subject, client_id, upstream_subject
	MaxTokenBytes = 16 << 10  // each token
	MaxBodyBytes  = 128 << 10 // a PUT body
	// MaxExpiresIn bounds expires_in (ten years, in seconds).
	MaxExpiresIn = 10 * 365 * 24 * 3600
)

// ErrInvalidInput is wrapped by *InputError.
var ErrInvalidInput = errors.New("invalid input")

// FieldError says what is wrong with one field, named as in the JSON body
// (or "session", "provider" for the path). Its message never holds the
// field's value.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// InputError lists every field that is wrong. It wraps ErrInvalidInput and
// store.ErrInvalid.
type InputError struct {
	Fields []FieldError
}

func (e *InputError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

// Unwrap makes errors.Is match ErrInvalidInput and store.ErrInvalid.
func (e *InputError) Unwrap() []error { return []error{ErrInvalidInput, store.ErrInvalid} }

func (e *InputError) add(field, format string, args ...any) {
	e.Fields = append(e.Fields, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (e *InputError) err() error {
	if len(e.Fields) == 0 {
		return nil
	}
	return e
}

// SessionWrite is the body of PUT /v1/sessions/{session}/providers/{provider}
// and what "extauthz tokens put" collects from its flags: one session's
// tokens at one provider, as the authorization server obtained them.
type SessionWrite struct {
	// Subject and ClientID bind the row: every Check's JWT must carry the
	// same sub and client_id (or azp). Required.
	Subject  string `json:"subject"`
	ClientID string `json:"client_id"`
	// AccessToken is required; RefreshToken and IDToken are optional.
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
	// TokenType defaults to "Bearer".
	TokenType string `json:"token_type,omitempty"`
	// ExpiresAt (RFC 3339) or ExpiresIn (seconds from now), not both; with
	// neither the access token never expires.
	ExpiresAt string `json:"expires_at,omitempty"`
	ExpiresIn *int64 `json:"expires_in,omitempty"`
	// SessionExpiresAt (RFC 3339), when set, is when the session's rows
	// may be garbage collected.
	SessionExpiresAt string `json:"session_expires_at,omitempty"`
	// UpstreamSubject is the provider's sub for the user (its ID token's).
	UpstreamSubject string `json:"upstream_subject,omitempty"`
}

// DecodeSessionWrite reads a JSON SessionWrite: one object, at most
// MaxBodyBytes, no unknown or repeated member (names match exactly, case
// included), nothing after it. Its error is an *InputError naming the body
// or the member, never holding a value.
func DecodeSessionWrite(r io.Reader) (SessionWrite, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxBodyBytes+1))
	if err != nil {
		return SessionWrite{}, &InputError{Fields: []FieldError{{"body", "could not be read"}}}
	}
	if len(data) > MaxBodyBytes {
		return SessionWrite{}, &InputError{Fields: []FieldError{{"body", fmt.Sprintf("larger than %d bytes", MaxBodyBytes)}}}
	}
	if problem, ok := memberProblem(data); ok {
		return SessionWrite{}, &InputError{Fields: []FieldError{problem}}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var w SessionWrite
	if err := dec.Decode(&w); err != nil {
		return SessionWrite{}, &InputError{Fields: []FieldError{decodeProblem(err)}}
	}
	if dec.More() {
		return SessionWrite{}, &InputError{Fields: []FieldError{{"body", "holds more than one JSON value"}}}
	}
	if _, err := dec.Token(); err != io.EOF {
		return SessionWrite{}, &InputError{Fields: []FieldError{{"body", "holds more than one JSON value"}}}
	}
	return w, nil
}

// decodeProblem names what encoding/json refused, without the value.
func decodeProblem(err error) FieldError {
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return FieldError{typeErr.Field, "must be a " + jsonKind(typeErr.Type.Kind().String())}
	case errors.As(err, &typeErr):
		return FieldError{"body", "must be a JSON object"}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return unknownMember(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`))
	}
	return FieldError{"body", "is not valid JSON"}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "int64", "int", "ptr":
		return "integer"
	}
	return goKind
}

// memberProblem reports a top-level member that is not exactly one of
// SessionWrite's names, or that is given twice. encoding/json would
// match "ACCESS_TOKEN" (or "\u017fubject", by Unicode folding) to a
// member and keep the last of two silently; a writer that sends either has
// a bug worth hearing about. A body that is not an object is left to the
// decoder.
func memberProblem(data []byte) (FieldError, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return FieldError{}, false
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return FieldError{}, false
		}
		name, _ := t.(string)
		if _, known := writeFields[name]; !known {
			return unknownMember(name), true
		}
		if seen[name] {
			return FieldError{name, "given more than once"}, true
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return FieldError{}, false
		}
	}
	return FieldError{}, false
}

// unknownMember names an unknown member by its name when that is short
// and printable, else as the body's.
func unknownMember(name string) FieldError {
	if len(name) > 64 || !utf8.ValidString(name) || strings.ContainsFunc(name, isControl) {
		return FieldError{"body", "has an unknown member"}
	}
	return FieldError{name, "is not a known member"}
}

// writeFields are SessionWrite's JSON member names.
var writeFields = map[string]struct{}{
	"subject": {}, "client_id": {}, "access_token": {}, "refresh_token": {}, "id_token": {}, "token_type": {},
	"expires_at": {}, "expires_in": {}, "session_expires_at": {}, "upstream_subject": {},
}

// Row validates w for session and provider and returns the row to store.
// known reports whether a provider name is configured; now resolves
// expires_in. Every problem is reported, each naming its field, in one
// *InputError.
func (w SessionWrite) Row(session, provider string, known func(string) bool, now time.Time) (store.Row, error) {
	var e InputError
	name := func(field, v string, required bool) {
		switch {
		case v == "" && required:
			e.add(field, "is required")
		case len(v) > MaxNameBytes:
			e.add(field, "is longer than %d bytes", MaxNameBytes)
		case !utf8.ValidString(v):
			e.add(field, "is not valid UTF-8")
		case strings.ContainsFunc(v, isControl):
			e.add(field, "holds a control character")
		}
	}
	name("session", session, true)
	switch {
	case provider == "":
		e.add("provider", "is required")
	case !known(provider):
		e.add("provider", "is not a configured provider")
	}
	name("subject", w.Subject, true)
	name("client_id", w.ClientID, true)
	name("upstream_subject", w.UpstreamSubject, false)
	token := func(field, v string, required bool) {
		switch {
		case v == "" && required:
			e.add(field, "is required")
		case len(v) > MaxTokenBytes:
			e.add(field, "is longer than %d bytes", MaxTokenBytes)
		case !headerSafe(v):
			e.add(field, "must be visible ASCII without spaces (it is sent in a header)")
		}
	}
	token("access_token", w.AccessToken, true)
	token("refresh_token", w.RefreshToken, false)
	token("id_token", w.IDToken, false)
	tokenType := w.TokenType
	if tokenType == "" {
		tokenType = "Bearer"
	}
	if len(tokenType) > 64 || !headerSafe(tokenType) {
		e.add("token_type", "must be at most 64 visible ASCII characters without spaces")
	}

	row := store.Row{SessionID: session, Provider: provider, Subject: w.Subject, ClientID: w.ClientID,
		UpstreamSubject: w.UpstreamSubject,
		Tokens:          store.Tokens{AccessToken: w.AccessToken, RefreshToken: w.RefreshToken, IDToken: w.IDToken, TokenType: tokenType}}
	switch {
	case w.ExpiresAt != "" && w.ExpiresIn != nil:
		e.add("expires_in", "cannot be given with expires_at: give one of them")
	case w.ExpiresAt != "":
		row.ExpiresAt = rfc3339(&e, "expires_at", w.ExpiresAt)
	case w.ExpiresIn != nil && (*w.ExpiresIn < 0 || *w.ExpiresIn > MaxExpiresIn):
		e.add("expires_in", "must be between 0 and %d seconds", MaxExpiresIn)
	case w.ExpiresIn != nil:
		row.ExpiresAt = now.Add(time.Duration(*w.ExpiresIn) * time.Second)
	}
	if w.SessionExpiresAt != "" {
		row.SessionExpiresAt = rfc3339(&e, "session_expires_at", w.SessionExpiresAt)
	}
	if err := e.err(); err != nil {
		return store.Row{}, err
	}
	return row, nil
}

// rfc3339 parses an RFC 3339 time (with a zone; a fractional second is
// kept), recording a problem on e.
func rfc3339(e *InputError, field, v string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil || len(v) > 64 {
		e.add(field, "is not an RFC 3339 time (e.g. 2026-12-05T10:00:00Z)")
		return time.Time{}
	}
	if t.Year() < 1970 || t.Year() > 9999 {
		e.add(field, "is out of range")
		return time.Time{}
	}
	return t
}

// CheckSessionID validates a session ID given alone (a GET or DELETE path).
func CheckSessionID(session string) error {
	var e InputError
	switch {
	case session == "":
		e.add("session", "is required")
	case len(session) > MaxNameBytes:
		e.add("session", "is longer than %d bytes", MaxNameBytes)
	case !utf8.ValidString(session) || strings.ContainsFunc(session, isControl):
		e.add("session", "holds a control character or invalid UTF-8")
	}
	return e.err()
}

// headerSafe reports whether v is visible ASCII (0x21-0x7E) only.
func headerSafe(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x21 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }
