package testop

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// errNotFound is what the storage answers for an unknown client, auth
// request, code or token; the library turns it into the protocol's error.
var errNotFound = errors.New("testop: not found")

// storage is the provider's state, in memory: op.Storage and
// op.ClientCredentialsStorage.
type storage struct {
	opts    Options
	key     *rsa.PrivateKey
	keyID   string
	users   map[string]*User // by username
	clients map[string]*client

	mu            sync.Mutex
	authRequests  map[string]*authRequest
	codes         map[string]string // code -> auth request ID
	accessTokens  map[string]*grant // token ID -> grant
	refreshTokens map[string]*grant // token value -> grant
	assertionJTIs map[string]bool   // private_key_jwt assertions seen
}

// grant is what an access or refresh token stands for.
type grant struct {
	subject  string
	clientID string
	audience []string
	scopes   []string
	authTime time.Time
	amr      []string
	expires  time.Time
}

func newStorage(opts Options, key *rsa.PrivateKey) (*storage, error) {
	s := &storage{
		opts:          opts,
		key:           key,
		keyID:         randomID(),
		users:         map[string]*User{},
		clients:       map[string]*client{},
		authRequests:  map[string]*authRequest{},
		codes:         map[string]string{},
		accessTokens:  map[string]*grant{},
		refreshTokens: map[string]*grant{},
		assertionJTIs: map[string]bool{},
	}
	if s.opts.AccessTokenLifetime == 0 {
		s.opts.AccessTokenLifetime = 5 * time.Minute
	}
	if s.opts.IDTokenLifetime == 0 {
		s.opts.IDTokenLifetime = 5 * time.Minute
	}
	if s.opts.RefreshTokenLifetime == 0 {
		s.opts.RefreshTokenLifetime = time.Hour
	}
	for i := range opts.Users {
		u := opts.Users[i]
		if u.Username == "" {
			return nil, fmt.Errorf("user %d has no username", i)
		}
		if u.Subject == "" {
			u.Subject = u.Username
		}
		s.users[u.Username] = &u
	}
	for _, c := range opts.Clients {
		cl, err := newClient(c, s.opts.IDTokenLifetime)
		if err != nil {
			return nil, err
		}
		s.clients[c.ID] = cl
	}
	return s, nil
}

// randomID returns 32 random bytes, base64url-encoded: IDs, codes and
// refresh tokens.
func randomID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *storage) userBySubject(subject string) *User {
	for _, u := range s.users {
		if u.Subject == subject {
			return u
		}
	}
	return nil
}

// checkPassword returns the user with that username and password, or nil.
func (s *storage) checkPassword(username, password string) *User {
	u := s.users[username]
	if u == nil || subtle.ConstantTimeCompare([]byte(u.Password), []byte(password)) != 1 {
		return nil
	}
	return u
}

func (s *storage) authRequest(id string) (*authRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	req, ok := s.authRequests[id]
	if !ok {
		return nil, errNotFound
	}
	return req, nil
}

// signIn records that subject signed in for the auth request id.
func (s *storage) signIn(id, subject string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	req, ok := s.authRequests[id]
	if !ok {
		return errNotFound
	}
	req.subject = subject
	req.authTime = time.Now()
	return nil
}

// approve records the user's consent to the auth request id.
func (s *storage) approve(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	req, ok := s.authRequests[id]
	if !ok || req.subject == "" {
		return errNotFound
	}
	req.done = true
	return nil
}

// useAssertionJTI records a private_key_jwt assertion's jti and reports
// whether it is new.
func (s *storage) useAssertionJTI(clientID, jti string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := clientID + "\x00" + jti
	if s.assertionJTIs[k] {
		return false
	}
	s.assertionJTIs[k] = true
	return true
}

func (s *storage) refreshTokenCount(subject string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, g := range s.refreshTokens {
		if g.subject == subject && time.Now().Before(g.expires) {
			n++
		}
	}
	return n
}

// CreateAuthRequest implements op.AuthStorage.
func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	cl, ok := s.clients[req.ClientID]
	if !ok {
		return nil, errNotFound
	}
	ar := &authRequest{
		id:           randomID(),
		clientID:     req.ClientID,
		audience:     cl.audience(),
		redirectURI:  req.RedirectURI,
		scopes:       slices.Clone(req.Scopes),
		state:        req.State,
		nonce:        req.Nonce,
		responseType: req.ResponseType,
		responseMode: req.ResponseMode,
	}
	if req.CodeChallenge != "" {
		ar.codeChallenge = &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: req.CodeChallengeMethod}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authRequests[ar.id] = ar
	return ar, nil
}

// AuthRequestByID implements op.AuthStorage.
func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	return s.authRequest(id)
}

// AuthRequestByCode implements op.AuthStorage.
func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	id, ok := s.codes[code]
	s.mu.Unlock()
	if !ok {
		return nil, errNotFound
	}
	return s.authRequest(id)
}

// SaveAuthCode implements op.AuthStorage.
func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest implements op.AuthStorage: a code works once.
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.authRequests, id)
	for code, reqID := range s.codes {
		if reqID == id {
			delete(s.codes, code)
		}
	}
	return nil
}

// grantOf describes what a token request grants.
func (s *storage) grantOf(req op.TokenRequest) *grant {
	g := &grant{subject: req.GetSubject(), audience: req.GetAudience(), scopes: slices.Clone(req.GetScopes())}
	if c, ok := req.(interface{ GetClientID() string }); ok {
		g.clientID = c.GetClientID()
	}
	if r, ok := req.(op.IDTokenRequest); ok {
		g.authTime = r.GetAuthTime()
		g.amr = r.GetAMR()
	}
	return g
}

// CreateAccessToken implements op.AuthStorage.
func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	g := s.grantOf(req)
	g.expires = time.Now().Add(s.opts.AccessTokenLifetime)
	id := randomID()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accessTokens[id] = g
	return id, g.expires, nil
}

// CreateAccessAndRefreshTokens implements op.AuthStorage. A refresh token
// is rotated: currentRefreshToken, if any, stops working.
func (s *storage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, currentRefreshToken string) (string, string, time.Time, error) {
	if currentRefreshToken != "" {
		s.mu.Lock()
		_, ok := s.refreshTokens[currentRefreshToken]
		delete(s.refreshTokens, currentRefreshToken)
		s.mu.Unlock()
		if !ok {
			return "", "", time.Time{}, oidc.ErrInvalidGrant()
		}
	}
	id, exp, err := s.CreateAccessToken(ctx, req)
	if err != nil {
		return "", "", time.Time{}, err
	}
	g := s.grantOf(req)
	g.expires = time.Now().Add(s.opts.RefreshTokenLifetime)
	refreshToken := randomID()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refreshTokens[refreshToken] = g
	return id, refreshToken, exp, nil
}

// TokenRequestByRefreshToken implements op.AuthStorage.
func (s *storage) TokenRequestByRefreshToken(_ context.Context, refreshToken string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.refreshTokens[refreshToken]
	if !ok || !time.Now().Before(g.expires) {
		return nil, errNotFound
	}
	return &refreshRequest{g: *g}, nil
}

// TerminateSession implements op.AuthStorage: it ends every grant of the
// user to the client.
func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range []map[string]*grant{s.accessTokens, s.refreshTokens} {
		for k, g := range m {
			if g.subject == userID && g.clientID == clientID {
				delete(m, k)
			}
		}
	}
	return nil
}

// RevokeToken implements op.AuthStorage: tokenOrTokenID is a refresh token
// or an access token's ID. An unknown token is no error (RFC 7009).
func (s *storage) RevokeToken(_ context.Context, tokenOrTokenID, _, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range []map[string]*grant{s.refreshTokens, s.accessTokens} {
		if g, ok := m[tokenOrTokenID]; ok {
			if g.clientID != clientID {
				return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
			}
			delete(m, tokenOrTokenID)
		}
	}
	return nil
}

// GetRefreshTokenInfo implements op.AuthStorage; the token is its own ID.
func (s *storage) GetRefreshTokenInfo(_ context.Context, _, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.refreshTokens[token]
	if !ok {
		return "", "", op.ErrInvalidRefreshToken
	}
	return g.subject, token, nil
}

// SigningKey implements op.AuthStorage.
func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	return signingKey{id: s.keyID, key: s.key}, nil
}

// SignatureAlgorithms implements op.AuthStorage.
func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

// KeySet implements op.AuthStorage.
func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{id: s.keyID, key: &s.key.PublicKey}}, nil
}

// GetClientByClientID implements op.OPStorage.
func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	c, ok := s.clients[id]
	if !ok {
		return nil, errNotFound
	}
	return c, nil
}

// AuthorizeClientIDSecret implements op.OPStorage.
func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, ok := s.clients[id]
	if !ok || c.reg.Secret == "" || subtle.ConstantTimeCompare([]byte(c.reg.Secret), []byte(secret)) != 1 {
		return errNotFound
	}
	return nil
}

// SetUserinfoFromScopes implements op.OPStorage (deprecated by the
// library: SetUserinfoFromRequest does the work).
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest implements op.CanSetUserinfoFromRequest: the
// claims of the ID token.
func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	s.setUserinfo(info, req.GetSubject(), scopes)
	return nil
}

func (s *storage) setUserinfo(info *oidc.UserInfo, subject string, scopes []string) {
	info.Subject = subject
	u := s.userBySubject(subject)
	if u == nil {
		return
	}
	for _, scope := range scopes {
		switch scope {
		case oidc.ScopeProfile:
			info.PreferredUsername = u.Username
			info.Name = u.Name
		case oidc.ScopeEmail:
			info.Email = u.Email
			info.EmailVerified = oidc.Bool(u.Email != "")
		}
	}
}

// SetUserinfoFromToken implements op.OPStorage: userinfo for a valid
// access token.
func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	s.mu.Lock()
	g, ok := s.accessTokens[tokenID]
	s.mu.Unlock()
	if !ok || g.subject != subject || !time.Now().Before(g.expires) {
		return errNotFound
	}
	s.setUserinfo(info, subject, g.scopes)
	return nil
}

// SetIntrospectionFromToken implements op.OPStorage.
func (s *storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	s.mu.Lock()
	g, ok := s.accessTokens[tokenID]
	s.mu.Unlock()
	if !ok || g.subject != subject || !time.Now().Before(g.expires) {
		return errNotFound
	}
	resp.Active = true
	resp.Subject = subject
	resp.ClientID = g.clientID
	resp.Scope = g.scopes
	resp.Audience = g.audience
	resp.Expiration = oidc.FromTime(g.expires)
	return nil
}

// GetPrivateClaimsFromScopes implements op.OPStorage: the access token's
// scope and Options.AccessTokenClaims.
func (s *storage) GetPrivateClaimsFromScopes(_ context.Context, subject, clientID string, scopes []string) (map[string]any, error) {
	claims := map[string]any{}
	if s.opts.AccessTokenClaims != nil {
		for k, v := range s.opts.AccessTokenClaims(subject, clientID, slices.Clone(scopes)) {
			claims[k] = v
		}
	}
	if len(scopes) > 0 {
		claims["scope"] = strings.Join(scopes, " ")
	}
	return claims, nil
}

// GetKeyByIDAndClientID implements op.OPStorage: the key that verifies a
// private_key_jwt client's assertions.
func (s *storage) GetKeyByIDAndClientID(_ context.Context, keyID, clientID string) (*jose.JSONWebKey, error) {
	c, ok := s.clients[clientID]
	if !ok || c.reg.PublicKey == nil || (c.reg.KeyID != "" && c.reg.KeyID != keyID) {
		return nil, errNotFound
	}
	return &jose.JSONWebKey{Key: c.reg.PublicKey, KeyID: keyID, Use: "sig"}, nil
}

// ValidateJWTProfileScopes implements op.OPStorage.
func (s *storage) ValidateJWTProfileScopes(_ context.Context, _ string, scopes []string) ([]string, error) {
	return scopes, nil
}

// Health implements op.Storage.
func (s *storage) Health(context.Context) error { return nil }

// ClientCredentials implements op.ClientCredentialsStorage.
func (s *storage) ClientCredentials(ctx context.Context, id, secret string) (op.Client, error) {
	if err := s.AuthorizeClientIDSecret(ctx, id, secret); err != nil {
		return nil, err
	}
	return s.clients[id], nil
}

// ClientCredentialsTokenRequest implements op.ClientCredentialsStorage:
// the client is the subject.
func (s *storage) ClientCredentialsTokenRequest(_ context.Context, id string, scopes []string) (op.TokenRequest, error) {
	c, ok := s.clients[id]
	if !ok {
		return nil, errNotFound
	}
	return &clientCredentialsRequest{clientID: id, audience: c.audience(), scopes: scopes}, nil
}

// signingKey is the provider's key, as op.SigningKey.
type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k signingKey) Key() any                                    { return k.key }
func (k signingKey) ID() string                                  { return k.id }

// publicKey is the provider's public key, as op.Key (the JWKS).
type publicKey struct {
	id  string
	key *rsa.PublicKey
}

func (k publicKey) ID() string                         { return k.id }
func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return k.key }

// authRequest is an authorization request in progress, as op.AuthRequest.
type authRequest struct {
	id            string
	clientID      string
	audience      []string
	redirectURI   string
	scopes        []string
	state         string
	nonce         string
	responseType  oidc.ResponseType
	responseMode  oidc.ResponseMode
	codeChallenge *oidc.CodeChallenge

	// Set by the login form and the consent page (under storage.mu until
	// the request is done).
	subject  string
	authTime time.Time
	done     bool
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAMR() []string                      { return []string{"pwd"} }
func (a *authRequest) GetAudience() []string                 { return a.audience }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.codeChallenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.responseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetScopes() []string                   { return a.scopes }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }

// refreshRequest is a refresh token's grant, as op.RefreshTokenRequest.
type refreshRequest struct{ g grant }

func (r *refreshRequest) GetAMR() []string                 { return r.g.amr }
func (r *refreshRequest) GetAudience() []string            { return r.g.audience }
func (r *refreshRequest) GetAuthTime() time.Time           { return r.g.authTime }
func (r *refreshRequest) GetClientID() string              { return r.g.clientID }
func (r *refreshRequest) GetScopes() []string              { return r.g.scopes }
func (r *refreshRequest) GetSubject() string               { return r.g.subject }
func (r *refreshRequest) SetCurrentScopes(scopes []string) { r.g.scopes = scopes }

// clientCredentialsRequest is a client_credentials grant, as
// op.TokenRequest.
type clientCredentialsRequest struct {
	clientID string
	audience []string
	scopes   []string
}

func (r *clientCredentialsRequest) GetSubject() string    { return r.clientID }
func (r *clientCredentialsRequest) GetClientID() string   { return r.clientID }
func (r *clientCredentialsRequest) GetAudience() []string { return r.audience }
func (r *clientCredentialsRequest) GetScopes() []string   { return r.scopes }
