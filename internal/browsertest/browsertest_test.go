package browsertest_test

import (
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/internal/browsertest"
)

func TestMain(m *testing.M) { os.Exit(browsertest.Main(m)) }

// Every step on a small form: fill, click (a POST, then a redirect), wait
// for the text and the URL, read them; and two pages do not share cookies.
func TestSteps(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /form", func(w http.ResponseWriter, r *http.Request) {
		seen := "none"
		if c, err := r.Cookie("seen"); err == nil {
			seen = c.Value
		}
		fmt.Fprintf(w, `<!doctype html><p>cookie: %s</p><form method="post" action="/submit"><input id="name" name="name"><button id="go">Go</button></form>`, html.EscapeString(seen))
	})
	mux.HandleFunc("POST /submit", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "seen", Value: "yes", Path: "/"})
		http.Redirect(w, r, "/done?name="+r.PostFormValue("name"), http.StatusSeeOther)
	})
	mux.HandleFunc("GET /done", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><p>hello %s</p>`, html.EscapeString(r.URL.Query().Get("name")))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	page := browsertest.New(t)
	page.Navigate(srv.URL + "/form")
	page.WaitText("cookie: none")
	page.Fill("#name", "ada")
	page.Click("#go")
	page.WaitURL(srv.URL + "/done")
	page.WaitText("hello ada")
	if got := page.URL(); got != srv.URL+"/done?name=ada" {
		t.Errorf("URL %s", got)
	}
	if got := strings.TrimSpace(page.Text()); got != "hello ada" {
		t.Errorf("text %q", got)
	}
	page.Navigate(srv.URL + "/form")
	page.WaitText("cookie: yes")

	other := browsertest.New(t)
	other.Navigate(srv.URL + "/form")
	other.WaitText("cookie: none")
}
