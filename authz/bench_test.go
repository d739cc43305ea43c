package authz_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/jwtauth"
	"github.com/extauthz/extauthz/jwtauth/jwttest"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/cached"
	"github.com/extauthz/extauthz/store/memory"
	"github.com/extauthz/extauthz/upstreamtoken"
)

const (
	benchIssuer   = "https://as.bench.example"
	benchAudience = "https://api.bench.example"
	benchClient   = "bench-app"
)

// decisionFixture is a Decider as `extauthz serve` builds it, minus
// PostgreSQL, encryption and metrics: a real jwtauth.Verifier on a static
// JWKS (ES256) and an InProcessService over the memory store, holding a
// fresh upstream token for each of n sessions. With caches, the verifier
// remembers verified tokens and a store/cached (trusted, as while its
// listener is up) sits above the store, as in serve. reqs[i] is the request
// of session i, with the headers Envoy typically sends.
func decisionFixture(b *testing.B, n int, caches bool) (*authz.Decider, []authz.Request) {
	b.Helper()
	ctx := context.Background()
	signer := jwttest.NewSigner(b)
	cfg := jwtauth.Config{
		Issuer:    benchIssuer,
		Audiences: []string{benchAudience},
		JWKSFile:  signer.WriteJWKSFile(b),
	}
	if caches {
		cfg.CacheSize = 10000
	}
	v, err := jwtauth.New(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	st := memory.New()
	now := time.Now()
	reqs := make([]authz.Request, n)
	for i := range n {
		sid, sub := fmt.Sprintf("s-%05d", i), fmt.Sprintf("user-%05d", i)
		err := st.Put(ctx, store.Row{
			SessionID: sid, Provider: "gh", Subject: sub, ClientID: benchClient,
			Tokens: store.Tokens{AccessToken: "gho_" + sid, RefreshToken: "ghr_" + sid, TokenType: "Bearer", ExpiresAt: now.Add(time.Hour)},
		})
		if err != nil {
			b.Fatal(err)
		}
		jwt := signer.Sign(b, map[string]any{
			"iss": benchIssuer, "aud": benchAudience, "sub": sub, "client_id": benchClient,
			"tsid": sid, "scope": "read write", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		})
		reqs[i] = authz.Request{Headers: map[string]string{
			":authority":        "api.bench.example",
			":method":           "GET",
			":path":             "/v1/items?limit=20",
			":scheme":           "https",
			"accept":            "application/json",
			"user-agent":        "bench-client/1.0",
			"x-forwarded-proto": "https",
			"x-request-id":      fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
			"authorization":     "Bearer " + jwt,
		}}
	}
	var source store.Store = st
	if caches {
		c := cached.New(st, cached.Options{Size: 20000, Skew: 30 * time.Second})
		c.Trust(time.Now().Add(24 * time.Hour))
		source = c
	}
	svc := upstreamtoken.NewInProcessService(source, nil)
	d := authz.New(authz.Config{
		Providers:        map[string]authz.Provider{"gh": {}, "google": {Header: "x-google-token", IDTokenHeader: "x-google-id"}},
		DefaultProviders: []string{"gh"},
		Realm:            "api",
	}, v, svc, nil)
	// Every request must be allowed with its own session's token.
	for i, r := range reqs {
		resp := d.Check(ctx, r)
		if !resp.Allowed {
			b.Fatalf("session %d: %d %s", i, resp.Status, resp.Reason)
		}
	}
	return d, reqs
}

// BenchmarkDecision measures Decider.Check on the hot path: a valid JWT
// whose session has a fresh upstream token (no refresh), from the raw
// request headers to the allow response, without caches (every Check
// verifies the signature and reads the store) and with them (after the
// first Check of a session, none does), and with caches and the providers
// named by a context extension, as Envoy's routes usually do. It reports
// allocations per Check.
func BenchmarkDecision(b *testing.B) {
	for _, bc := range []struct {
		name   string
		n      int
		caches bool
		ext    map[string]string
	}{
		{"sessions=1", 1, false, nil},
		{"sessions=1000", 1000, false, nil},
		{"caches/sessions=1000", 1000, true, nil},
		{"caches/context_extensions/sessions=1000", 1000, true, map[string]string{authz.ContextKeyProviders: "gh"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			n := bc.n
			d, reqs := decisionFixture(b, n, bc.caches)
			for i := range reqs {
				reqs[i].ContextExtensions = bc.ext
			}
			ctx := b.Context()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if resp := d.Check(ctx, reqs[i%n]); !resp.Allowed {
					b.Fatalf("denied: %s", resp.Reason)
				}
				i++
			}
		})
	}
	b.Run("sessions=1000/parallel", func(b *testing.B) {
		d, reqs := decisionFixture(b, 1000, false)
		ctx := b.Context()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if resp := d.Check(ctx, reqs[i%len(reqs)]); !resp.Allowed {
					b.Errorf("denied: %s", resp.Reason)
					return
				}
				i += 7
			}
		})
	})
}
