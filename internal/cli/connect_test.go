package cli

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/extauthz/extauthz/connect"
	"github.com/extauthz/extauthz/store"
)

// TestEndToEndConnectLink runs serve with listen.connect over real
// PostgreSQL: a gRPC deny for a missing or dead grant carries the connect
// link (body and Link), whose ticket redeems once, against the database, to
// the JWT's session, subject, client and the route's provider; a binding
// mismatch and an expired session carry none; an MCP route answers a
// tools/call with the JSON-RPC error; nothing of a ticket is logged.
func TestEndToEndConnectLink(t *testing.T) {
	e := startE2E(t, e2eOptions{connect: true})
	fresh, expired := time.Now().Add(time.Hour), time.Now().Add(-time.Hour)
	e.put(t, store.Row{SessionID: "s-ok", Provider: "gh", Tokens: store.Tokens{AccessToken: "gh-access", ExpiresAt: fresh}})
	e.put(t, store.Row{SessionID: "s-refused", Provider: "gh", Tokens: store.Tokens{AccessToken: "old", RefreshToken: "refused-1", ExpiresAt: expired}})
	e.put(t, store.Row{SessionID: "s-ended", Provider: "gh", Tokens: store.Tokens{AccessToken: "gh-access", ExpiresAt: fresh}, SessionExpiresAt: expired})
	tickets := connect.NewTickets(e.keys, e.raw, 0)
	var links []string

	for _, tc := range []struct {
		name, session, providers string
		claims                   map[string]any
		provider                 string // "" = no link
	}{
		{"unknown session", "s-unknown", "", nil, "gh"},
		{"provider missing from session", "s-ok", "gh,google", nil, "google"},
		{"refresh refused", "s-refused", "", nil, "gh"},
		{"refused again (marked)", "s-refused", "", nil, "gh"},
		{"binding mismatch", "s-ok", "gh,google", map[string]any{"sub": "mallory"}, ""},
		{"session expired", "s-ended", "", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.check(t, map[string]string{"authorization": "Bearer " + e.jwt(t, tc.session, tc.claims)}, tc.providers)
			d := resp.GetDeniedResponse()
			if d.GetStatus().GetCode() != 401 {
				t.Fatalf("status %d, want 401", d.GetStatus().GetCode())
			}
			var body struct {
				ConnectURI string `json:"connect_uri"`
			}
			if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
				t.Fatal(err)
			}
			link := respHeaders(resp)["link"]
			if tc.provider == "" {
				if link != "" || body.ConnectURI != "" {
					t.Fatalf("a link where none belongs (Link set %v, connect_uri set %v)", link != "", body.ConnectURI != "")
				}
				return
			}
			if link != "<"+body.ConnectURI+`>; rel="connect"` || !strings.HasPrefix(body.ConnectURI, e2eConnectURL+"/connect?ticket=") {
				t.Fatalf("Link and connect_uri disagree or are not under connect.public_url (lengths %d, %d)", len(link), len(body.ConnectURI))
			}
			links = append(links, body.ConnectURI)
			u, _ := url.Parse(body.ConnectURI)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			tk, err := tickets.Redeem(ctx, u.Query().Get("ticket"))
			if err != nil {
				t.Fatal(err)
			}
			if tk.SessionID != tc.session || tk.Subject != "alice" || tk.ClientID != "app" || tk.Provider != tc.provider {
				t.Errorf("ticket for the wrong grant: session %v, subject %v, client %v, provider %q",
					tk.SessionID == tc.session, tk.Subject == "alice", tk.ClientID == "app", tk.Provider)
			}
			if until := time.Until(tk.ExpiresAt); until < 3*time.Minute || until > 6*time.Minute {
				t.Errorf("ticket valid for %v, want about connect.ticket_ttl (5m)", until)
			}
			if _, err := tickets.Redeem(ctx, u.Query().Get("ticket")); !errors.Is(err, connect.ErrTicketUsed) {
				t.Errorf("second redemption: %v, want ErrTicketUsed", err)
			}
		})
	}

	// An MCP route: a tools/call gets the JSON-RPC error with HTTP 200; the
	// same request without its body gets the plain deny.
	toolsCall := `{"jsonrpc":"2.0","id":"call-1","method":"tools/call","params":{"name":"issues"}}`
	for _, body := range []string{toolsCall, ""} {
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "POST", Path: "/mcp/", Host: "api.test", Body: body,
				Headers: map[string]string{"authorization": "Bearer " + e.jwt(t, "s-unknown", nil), "content-type": "application/json"},
			}},
		}}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := e.client.Check(ctx, req)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		d := resp.GetDeniedResponse()
		var rpc struct {
			JSONRPC string `json:"jsonrpc"`
			ID      string `json:"id"`
			Error   struct {
				Code int `json:"code"`
				Data struct {
					Elicitations []struct{ Mode, URL string } `json:"elicitations"`
				} `json:"data"`
			} `json:"error"`
		}
		_ = json.Unmarshal([]byte(d.GetBody()), &rpc)
		switch {
		case body == "" && (d.GetStatus().GetCode() != 401 || rpc.JSONRPC != ""):
			t.Errorf("MCP route without a body: status %d, want the plain 401", d.GetStatus().GetCode())
		case body != "" && (d.GetStatus().GetCode() != 200 || resp.GetStatus().GetCode() == 0 || rpc.JSONRPC != "2.0" || rpc.ID != "call-1" ||
			rpc.Error.Code != -32042 || len(rpc.Error.Data.Elicitations) != 1 || rpc.Error.Data.Elicitations[0].Mode != "url" ||
			!strings.HasPrefix(rpc.Error.Data.Elicitations[0].URL, e2eConnectURL+"/connect?ticket=")):
			t.Errorf("MCP route: status %d (gRPC %d), not the URL elicitation required error", d.GetStatus().GetCode(), resp.GetStatus().GetCode())
		}
	}

	secrets := []string{"gh-access", "refused-1"}
	for _, l := range links {
		u, _ := url.Parse(l)
		secrets = append(secrets, u.Query().Get("ticket"))
	}
	e.assertNoSecretsLogged(t, secrets...)
	if e.connect == nil || !strings.Contains(e.logs.String(), "serving the connect flow") {
		t.Error("serve does not serve listen.connect")
	}
}
