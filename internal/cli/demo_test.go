package cli

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/jwtauth"
)

// TestDemoServesWhatTheComposeStackUses runs "extauthz demo" and uses it as
// the compose stack does: its JWKS verifies the JWTs it mints, and its token
// endpoint refreshes.
func TestDemoServesWhatTheComposeStackUses(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	logs := &syncBuffer{}
	go func() {
		done <- Run(ctx, []string{"demo", "--listen", addr, "--issuer", "http://demo.test", "--audience", "demo-api"},
			Env{Stdout: logs, Stderr: logs, Getenv: func(string) string { return "" }})
	}()
	base := "http://" + addr
	testutil.Eventually(t, 10*time.Second, "demo answering /healthz", func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})

	get := func(path string) string {
		t.Helper()
		r, err := http.Get(base + path)
		if err != nil || r.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", path, r, err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return strings.TrimSpace(string(b))
	}
	v, err := jwtauth.New(context.Background(), jwtauth.Config{Issuer: "http://demo.test", Audiences: []string{"demo-api"}, JWKSURL: base + "/jwks.json"})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := v.Verify(context.Background(), get("/jwt?scope=repo"))
	if err != nil || claims.SessionID != devSession || claims.Subject != devSubject || claims.ClientID != devClientID || len(claims.Scopes) != 1 {
		t.Fatalf("minted JWT: %+v %v", claims, err)
	}

	r, err := http.PostForm(base+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}})
	if err != nil {
		t.Fatal(err)
	}
	var tok map[string]any
	_ = json.NewDecoder(r.Body).Decode(&tok)
	r.Body.Close()
	if r.StatusCode != 200 || !strings.HasPrefix(tok["access_token"].(string), "upstream-demo-token-") || tok["expires_in"].(float64) != 300 {
		t.Errorf("token endpoint: %d %v", r.StatusCode, tok)
	}
	for form, want := range map[string]string{"": "invalid_request", "grant_type=password": "unsupported_grant_type"} {
		r, err := http.Post(base+"/token", "application/x-www-form-urlencoded", strings.NewReader(form))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != 400 || !strings.Contains(string(b), want) {
			t.Errorf("form %q: %d %s", form, r.StatusCode, b)
		}
	}
	if strings.Contains(logs.String(), "upstream-demo-token-") {
		t.Error("demo logged a token")
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("demo exited %d", code)
	}
}
