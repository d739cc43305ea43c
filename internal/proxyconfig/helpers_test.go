package proxyconfig

import (
	"strings"
	"testing"
)

// configured fails t unless err is what the case wants: an error
// containing wantErr, or none when wantErr is "". It reports whether there
// is output to check.
func configured(t *testing.T, err error, wantErr string) bool {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("error %v, want one containing %q", err, wantErr)
		}
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// linesInOrder fails t unless each of want is a line of got (trimmed), in
// this order, and none of notWant is.
func linesInOrder(t *testing.T, got string, want, notWant []string) {
	t.Helper()
	var lines []string
	count := map[string]int{}
	for _, l := range strings.Split(got, "\n") {
		lines = append(lines, strings.TrimSpace(l))
		count[strings.TrimSpace(l)]++
	}
	i := 0
	for _, w := range want {
		for i < len(lines) && lines[i] != w {
			i++
		}
		if i == len(lines) {
			t.Errorf("missing line %q (in this order) in\n%s", w, got)
			break
		}
	}
	for _, w := range notWant {
		if count[w] != 0 {
			t.Errorf("unexpected line %q in\n%s", w, got)
		}
	}
}
