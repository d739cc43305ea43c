package adminapi

import (
	"bytes"
	_ "embed"
	"net/http"
)

// openAPIDocument is the OpenAPI 3.1 document of the API, kept true by
// the package's tests: every example in it validates against its schema
// and every answer the handler gives validates against it.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns the API's OpenAPI 3.1 document (JSON), a copy that the
// caller may change.
func OpenAPI() []byte { return bytes.Clone(openAPIDocument) }

// openAPI serves the document; it needs no authentication.
func (a *api) openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(a.opts.OpenAPI)
}
