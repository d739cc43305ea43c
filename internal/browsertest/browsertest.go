// Package browsertest drives a real headless Chromium for tests, through
// the DevTools protocol (github.com/chromedp/chromedp).
//
// The browser is the one named by the environment variable EnvVar
// (scripts/test sets it, installing the Debian package chromium when
// needed). Without it, New skips the test, or fails it when CI is "true".
//
// A package whose TestMain calls Main shares one browser among its tests;
// otherwise each test starts its own. Either way every Page has its own
// browser context: its own cookies and storage, as a fresh private window.
// The browser runs headless with a temporary profile, with --no-sandbox
// when the tests run as root, and resolves no host name but localhost, so
// it reaches nothing but this machine.
//
// Steps that fail end the test with t.Fatal, naming the page's URL; steps
// that wait give up after Timeout, which is generous because the machine
// may be slow and shared.
package browsertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// EnvVar names the Chromium binary.
const EnvVar = "EXTAUTHZ_TEST_CHROMIUM"

// Timeout bounds every step of a Page.
const Timeout = 90 * time.Second

// shared is the browser of the test binary, while Main runs.
var shared struct {
	mu      sync.Mutex
	enabled bool
	ctx     context.Context // the browser's root chromedp context
	cancel  context.CancelFunc
}

// Main runs the tests of m with one browser shared among them (started on
// first use) and stops it afterwards. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(browsertest.Main(m)) }
func Main(m *testing.M) int {
	shared.mu.Lock()
	shared.enabled = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cancel != nil {
		shared.cancel()
	}
	return code
}

// Page is one browser tab in a browser context of its own.
type Page struct {
	t   testing.TB
	ctx context.Context
}

// New opens a page (about:blank) for t, closed when t ends.
func New(t testing.TB) *Page {
	t.Helper()
	bin := os.Getenv(EnvVar)
	if bin == "" {
		const msg = "set " + EnvVar + " to a Chromium binary to run browser tests"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}

	shared.mu.Lock()
	defer shared.mu.Unlock()
	root := shared.ctx
	if root == nil {
		ctx, cancel, err := startBrowser(bin)
		if err != nil {
			t.Fatalf("browsertest: start %s: %v", bin, err)
		}
		if shared.enabled {
			shared.ctx, shared.cancel = ctx, cancel
		} else {
			t.Cleanup(cancel)
		}
		root = ctx
	}

	ctx, cancel := chromedp.NewContext(root, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// The first Run opens the tab; its context must carry no deadline
	// (chromedp ties the tab's life to it).
	start := make(chan error, 1)
	go func() { start <- chromedp.Do(ctx) }()
	select {
	case err := <-start:
		if err != nil {
			t.Fatalf("browsertest: open a page: %v", err)
		}
	case <-time.After(Timeout):
		t.Fatalf("browsertest: open a page: no answer from the browser in %v", Timeout)
	}
	return &Page{t: t, ctx: ctx}
}

// startBrowser starts Chromium and returns its root context.
func startBrowser(bin string) (context.Context, context.CancelFunc, error) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Flag("no-sandbox", os.Getuid() == 0),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-proxy-server", true),
		// Only this machine: every other host name fails to resolve (IP
		// literals need no resolver; tests use 127.0.0.1).
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-domain-reliability", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	cancel := func() { cancelCtx(); cancelAlloc() }
	start := make(chan error, 1)
	go func() { start <- chromedp.Do(ctx) }()
	select {
	case err := <-start:
		if err != nil {
			cancel()
			return nil, nil, err
		}
	case <-time.After(Timeout):
		cancel()
		return nil, nil, fmt.Errorf("no answer in %v", Timeout)
	}
	return ctx, cancel, nil
}

// do runs a step with the timeout; a failure ends the test.
func (p *Page) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, Timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatalf("browsertest: %s (at %s): %v", what, p.location(), err)
	}
}

// location returns the page's URL for messages, or a placeholder.
func (p *Page) location() string {
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	u, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "an unknown URL"
	}
	return u
}

// Navigate loads url and waits for the load to finish (following
// redirects).
func (p *Page) Navigate(url string) {
	p.t.Helper()
	p.do("navigate to "+url, chromedp.Navigate(url))
}

// Fill types value into the field that the CSS selector sel names, after
// waiting for it to be visible.
func (p *Page) Fill(sel, value string) {
	p.t.Helper()
	p.do("fill "+sel, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.SendKeys(chromedp.CSS(sel), value))
}

// Click clicks the element that the CSS selector sel names, after waiting
// for it to be visible. A click that submits a form or follows a link does
// not wait for the next page: follow it with WaitText (or WaitURL) for
// something only the next page has.
func (p *Page) Click(sel string) {
	p.t.Helper()
	p.do("click "+sel, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)))
}

// errNotYet is what a wait's probe answers until its condition holds.
var errNotYet = errors.New("not yet")

// wait polls probe until it returns nil, for at most Timeout; then the test
// fails with what, the URL and the page's text.
func (p *Page) wait(what string, probe func(ctx context.Context) error) {
	p.t.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
		err := probe(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("browsertest: waited %v for %s; at %s the page says:\n%s", Timeout, what, p.location(), p.Text())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitText waits until the page's visible text contains text.
func (p *Page) WaitText(text string) {
	p.t.Helper()
	p.wait(fmt.Sprintf("the text %q", text), func(ctx context.Context) error {
		body, err := chromedp.Run(ctx, bodyText())
		if err != nil {
			return err
		}
		if !strings.Contains(body, text) {
			return errNotYet
		}
		return nil
	})
}

// WaitURL waits until the page's URL starts with prefix.
func (p *Page) WaitURL(prefix string) {
	p.t.Helper()
	p.wait("a URL that starts with "+prefix, func(ctx context.Context) error {
		u, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			return err
		}
		if !strings.HasPrefix(u, prefix) {
			return errNotYet
		}
		return nil
	})
}

// Text returns the page's visible text (the body's innerText), or "" when
// the page has no body.
func (p *Page) Text() string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, Timeout)
	defer cancel()
	body, err := chromedp.Run(ctx, bodyText())
	if err != nil {
		p.t.Fatalf("browsertest: read the page's text: %v", err)
	}
	return body
}

// URL returns the page's current URL.
func (p *Page) URL() string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, Timeout)
	defer cancel()
	u, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		p.t.Fatalf("browsertest: read the URL: %v", err)
	}
	return u
}

func bodyText() chromedp.Action[string] {
	return chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`)
}
