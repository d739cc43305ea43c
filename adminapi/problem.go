package adminapi

import (
	"encoding/json"
	"errors"
	"net/http"
)

// problem is an RFC 9457 problem details object. Type is always
// "about:blank" (the status says it all); Errors, for 400, lists every
// field that is wrong.
type problem struct {
	Type   string       `json:"type"`
	Title  string       `json:"title"`
	Status int          `json:"status"`
	Detail string       `json:"detail,omitempty"`
	Errors []FieldError `json:"errors,omitempty"`
}

// writeProblem answers p as application/problem+json and returns its status.
func writeProblem(w http.ResponseWriter, p problem) int {
	p.Type = "about:blank"
	p.Title = http.StatusText(p.Status)
	body, _ := json.Marshal(p)
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_, _ = w.Write(body)
	return p.Status
}

// writeInputError answers an *InputError with 400 listing its fields.
func writeInputError(w http.ResponseWriter, err error) int {
	var in *InputError
	if !errors.As(err, &in) {
		return writeProblem(w, problem{Status: http.StatusBadRequest, Detail: "invalid input"})
	}
	return writeProblem(w, problem{Status: http.StatusBadRequest, Detail: in.Error(), Errors: in.Fields})
}
