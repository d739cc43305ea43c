package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// linker is a Connector with predictable links; it records what it was
// asked for.
type linker struct {
	mu      sync.Mutex
	targets []ConnectTarget
	err     error
}

const linkSecret = "TICKET-SECRET"

func (l *linker) ConnectLink(_ context.Context, t ConnectTarget) (ConnectLink, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return ConnectLink{}, l.err
	}
	l.targets = append(l.targets, t)
	n := len(l.targets)
	return ConnectLink{URI: fmt.Sprintf("https://api.example/.extauthz/connect?ticket=%s-%d", linkSecret, n), ID: fmt.Sprintf("id-%d", n)}, nil
}

func (l *linker) take() []ConnectTarget {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.targets
	l.targets = nil
	return out
}

// TestConnectLinkOnDeny runs the deny table's grant rows with and without a
// Connector: the link is there exactly for a grant a connect can fix, for the
// right provider, in the body and in Link.
func TestConnectLinkOnDeny(t *testing.T) {
	for _, tc := range []struct {
		name, jwt, providers string
		status               int
		reason               string
		provider             string // the link's provider; "" = no link
	}{
		{"session unknown: the route's first provider", "jwt-s-unknown", "google,gh", 401, "session_not_found", "google"},
		{"provider missing from the session", "jwt-s-expired", "gh,google", 401, "session_not_found", "google"},
		{"no refresh token", "jwt-s-norefresh", "", 401, "no_refresh_token", "gh"},
		{"refresh refused (marked)", "jwt-s-refused", "", 401, "refresh_failed", "gh"},
		{"refused one among a passing failure", "jwt-s-mixed", "gh,google", 401, "refresh_failed", "google"},
		{"binding mismatch: never", "jwt-mallory", "", 401, "binding_mismatch", ""},
		{"session expired: sign in again, no link", "jwt-s-over", "", 401, "session_not_found", ""},
		{"provider unavailable: no link", "jwt-s-busy", "", 503, "provider_unavailable", ""},
		{"invalid JWT: no link", "garbage", "", 401, "invalid_token", ""},
		{"allowed", "jwt-s-ok", "", 200, "ok", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, connect := range []bool{false, true} {
				l := &linker{}
				d, _ := fixtureWith(t, func(c *Config) {
					if connect {
						c.Connect = l
					}
				}, nil)
				req := Request{Headers: map[string]string{"authorization": "Bearer " + tc.jwt}, ContextExtensions: map[string]string{}}
				if tc.providers != "" {
					req.ContextExtensions[ContextKeyProviders] = tc.providers
				}
				resp := d.Check(context.Background(), req)
				if resp.Status != tc.status || resp.Reason != tc.reason {
					t.Fatalf("connect=%v: status %d reason %q, want %d %q", connect, resp.Status, resp.Reason, tc.status, tc.reason)
				}
				var body struct {
					Error      string  `json:"error"`
					ConnectURI *string `json:"connect_uri"`
				}
				if !resp.Allowed {
					if err := json.Unmarshal([]byte(resp.Body), &body); err != nil {
						t.Fatalf("body %s: %v", resp.Body, err)
					}
				}
				link := headerMap(resp.Headers)["link"]
				targets := l.take()
				if !connect || tc.provider == "" {
					if link != "" || body.ConnectURI != nil || len(targets) != 0 {
						t.Errorf("connect=%v: a link where none belongs: Link %q, body %s, asked %v", connect, link, resp.Body, targets)
					}
					continue
				}
				want := ConnectTarget{SessionID: strings.TrimPrefix(tc.jwt, "jwt-"), Subject: "alice", ClientID: "app", Provider: tc.provider}
				if !reflect.DeepEqual(targets, []ConnectTarget{want}) {
					t.Errorf("link asked for %+v, want %+v", targets, want)
				}
				uri := "https://api.example/.extauthz/connect?ticket=" + linkSecret + "-1"
				if body.ConnectURI == nil || *body.ConnectURI != uri || body.Error != "invalid_token" {
					t.Errorf("body %s, want connect_uri %q", resp.Body, uri)
				}
				if link != "<"+uri+`>; rel="connect"` {
					t.Errorf("Link %q", link)
				}
				if !strings.HasPrefix(headerMap(resp.Headers)["www-authenticate"], challenge+`, error="invalid_token"`) {
					t.Errorf("the challenge changed: %q", headerMap(resp.Headers)["www-authenticate"])
				}
			}
		})
	}
}

// TestConnectLinkFailureLeavesThePlainDeny: a link that cannot be made (or
// is unfit for a header) is logged and left out; the deny stands.
func TestConnectLinkFailureLeavesThePlainDeny(t *testing.T) {
	for _, l := range []Connector{&linker{err: errors.New("ticket too long")}, badLinker{}} {
		var logs bytes.Buffer
		d, _ := fixtureWith(t, func(c *Config) { c.Connect = l }, slog.New(slog.NewTextHandler(&logs, nil)))
		resp := d.Check(context.Background(), Request{Headers: map[string]string{"authorization": "Bearer jwt-s-unknown"}})
		if resp.Status != 401 || headerMap(resp.Headers)["link"] != "" || strings.Contains(resp.Body, "connect_uri") {
			t.Errorf("%T: %d %s %v", l, resp.Status, resp.Body, resp.Headers)
		}
		if !strings.Contains(logs.String(), "connect link not made") || strings.Contains(logs.String(), "x-injected") {
			t.Errorf("%T: logs %s", l, logs.String())
		}
	}
}

type badLinker struct{}

func (badLinker) ConnectLink(context.Context, ConnectTarget) (ConnectLink, error) {
	return ConnectLink{URI: "https://x/\r\nx-injected: 1", ID: "1"}, nil
}

// mcpToolsCall is an MCP tools/call request, as an MCP client POSTs it.
const mcpToolsCall = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"list_repos","arguments":{"org":"acme"}}}`

// TestMCPDeny checks the deny_style mcp answer against the JSON-RPC 2.0
// error response shape and MCP's URL elicitation required error, and every
// case that keeps the plain deny.
func TestMCPDeny(t *testing.T) {
	l := &linker{}
	var logs bytes.Buffer
	d, _ := fixtureWith(t, func(c *Config) {
		c.Connect = l
		c.Routes = []Route{{PathPrefix: "/mcp", DenyStyle: DenyStyleMCP}}
	}, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))

	type rpcError struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Result  json.RawMessage `json:"result"`
		Error   *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Data    struct {
				Elicitations []map[string]string `json:"elicitations"`
			} `json:"data"`
		} `json:"error"`
	}
	for _, tc := range []struct {
		name, jwt, path, body string
		ext                   map[string]string
		status                int
		mcp                   bool
		id                    string
	}{
		{"tools/call on an unknown session", "jwt-s-unknown", "/mcp", mcpToolsCall, nil, 200, true, "7"},
		{"string id, refresh refused", "jwt-s-refused", "/mcp/x", `{"method":"tools/call","id":"abc-1","jsonrpc":"2.0"}`, nil, 200, true, `"abc-1"`},
		{"by context extension", "jwt-s-norefresh", "/other", mcpToolsCall, map[string]string{ContextKeyProviders: "gh", ContextKeyDenyStyle: "mcp"}, 200, true, "7"},
		{"no body", "jwt-s-unknown", "/mcp", "", nil, 401, false, ""},
		{"cut short (allow_partial_message)", "jwt-s-unknown", "/mcp", mcpToolsCall[:40], nil, 401, false, ""},
		{"notification", "jwt-s-unknown", "/mcp", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil, 401, false, ""},
		{"batch", "jwt-s-unknown", "/mcp", "[" + mcpToolsCall + "]", nil, 401, false, ""},
		{"null id", "jwt-s-unknown", "/mcp", `{"jsonrpc":"2.0","id":null,"method":"tools/call"}`, nil, 401, false, ""},
		{"not on an mcp route", "jwt-s-unknown", "/rest", mcpToolsCall, nil, 401, false, ""},
		{"the client's own token stays 401", "garbage", "/mcp", mcpToolsCall, nil, 401, false, ""},
		{"binding mismatch stays 401", "jwt-mallory", "/mcp", mcpToolsCall, nil, 401, false, ""},
		{"session expired stays 401", "jwt-s-over", "/mcp", mcpToolsCall, nil, 401, false, ""},
		{"provider outage stays 503", "jwt-s-busy", "/mcp", mcpToolsCall, nil, 503, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := Request{Headers: map[string]string{"authorization": "Bearer " + tc.jwt}, Path: tc.path, Body: tc.body, ContextExtensions: tc.ext}
			resp := d.Check(context.Background(), req)
			l.take()
			if resp.Allowed || resp.Status != tc.status {
				t.Fatalf("allowed %v status %d, want a deny with %d (body %s)", resp.Allowed, resp.Status, tc.status, resp.Body)
			}
			if resp.Result() != ResultDenied && tc.status != 503 {
				t.Errorf("result %q", resp.Result())
			}
			h := headerMap(resp.Headers)
			if !tc.mcp {
				if strings.Contains(resp.Body, "jsonrpc") {
					t.Errorf("a plain deny was wanted: %s", resp.Body)
				}
				return
			}
			var r rpcError
			dec := json.NewDecoder(strings.NewReader(resp.Body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&r); err != nil {
				t.Fatalf("body %s: %v", resp.Body, err)
			}
			if r.JSONRPC != "2.0" || string(r.ID) != tc.id || r.Result != nil || r.Error == nil {
				t.Fatalf("not a JSON-RPC 2.0 error response to id %s: %s", tc.id, resp.Body)
			}
			if r.Error.Code != -32042 || r.Error.Message == "" || len(r.Error.Data.Elicitations) != 1 {
				t.Fatalf("not a URL elicitation required error: %s", resp.Body)
			}
			e := r.Error.Data.Elicitations[0]
			if e["mode"] != "url" || e["elicitationId"] == "" || !strings.HasPrefix(e["url"], "https://api.example/.extauthz/connect?ticket=") ||
				e["message"] == "" || len(e) != 4 {
				t.Errorf("elicitation %v", e)
			}
			if h["content-type"] != "application/json" || h["link"] != "<"+e["url"]+`>; rel="connect"` || h["www-authenticate"] != "" {
				t.Errorf("headers %v", resp.Headers)
			}
		})
	}
	if strings.Contains(logs.String(), linkSecret) || strings.Contains(logs.String(), "list_repos") {
		t.Errorf("the logs show a ticket or the request body:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), `"connect_link":true`) {
		t.Errorf("the logs do not say a link was sent:\n%s", logs.String())
	}
}

func TestRequestID(t *testing.T) {
	for _, tc := range []struct {
		body, id string
	}{
		{mcpToolsCall, "7"},
		{`  {"jsonrpc":"2.0","id":"x\u0041","method":"m"}` + "\n", `"x\u0041"`},
		{`{"jsonrpc":"2.0","id": -3.5e2 ,"method":"m"}`, "-3.5e2"},
		{`{"jsonrpc":"2.0","id":0,"method":"m","params":[1,2]}`, "0"},
		{`{"jsonrpc":"2.0","id":1,"method":"m"} {"jsonrpc":"2.0","id":2,"method":"m"}`, ""},
		{`{"jsonrpc":"2.0","id":1,"method":"m"}x`, ""},
		{`{"jsonrpc":"1.0","id":1,"method":"m"}`, ""},
		{`{"id":1,"method":"m"}`, ""},
		{`{"jsonrpc":"2.0","id":1,"result":{}}`, ""},
		{`{"jsonrpc":"2.0","id":true,"method":"m"}`, ""},
		{`{"jsonrpc":"2.0","id":{"a":1},"method":"m"}`, ""},
		{`{"jsonrpc":"2.0","id":[1],"method":"m"}`, ""},
		{`{"jsonrpc":"2.0","id":"` + strings.Repeat("a", 300) + `","method":"m"}`, ""},
		{`{"jsonrpc":"2.0","id":1,"method":7}`, ""},
		{``, ""},
		{`null`, ""},
	} {
		id, ok := RequestID(tc.body)
		if ok != (tc.id != "") || string(id) != tc.id {
			t.Errorf("RequestID(%.60q) = %s, %v; want %q", tc.body, id, ok, tc.id)
		}
	}
}

// FuzzRequestID: whatever the body, an id that is found is a JSON string or
// number, and the MCP deny built on it is one valid JSON object echoing it.
func FuzzRequestID(f *testing.F) {
	for _, s := range []string{mcpToolsCall, `{"jsonrpc":"2.0","id":"a\"b","method":"m"}`, `[{}]`, `{"id":1e999999,"jsonrpc":"2.0","method":""}`, "{", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		id, ok := RequestID(body)
		if !ok {
			return
		}
		v, err := decodeID(id)
		if err != nil {
			t.Fatalf("id %s is not JSON: %v", id, err)
		}
		switch v.(type) {
		case string, json.Number:
		default:
			t.Fatalf("id %s is neither a string nor a number", id)
		}
		resp := denyMCP("session_not_found", id, ConnectLink{URI: "https://x/connect?ticket=t", ID: "1"}, "gh")
		var out struct {
			ID json.RawMessage `json:"id"`
		}
		if err := json.Unmarshal([]byte(resp.Body), &out); err != nil {
			t.Fatalf("deny body %s: %v", resp.Body, err)
		}
		if echoed, err := decodeID(out.ID); err != nil || echoed != v {
			t.Fatalf("deny echoes id %s, request had %s", out.ID, id)
		}
	})
}

// decodeID decodes a JSON-RPC id, keeping numbers as written.
func decodeID(id json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(id))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}
