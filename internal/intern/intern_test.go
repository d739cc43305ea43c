package intern

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

func sameBytes(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }

func TestStrings(t *testing.T) {
	tests := []struct {
		name      string
		limit     int
		add       []string
		wantLen   int
		wantShare []bool // whether each add returned the first copy's bytes
	}{
		{"shares equal values", 4, []string{"github", "github", "google", "github"}, 2, []bool{true, true, true, true}},
		{"bounded", 1, []string{"a", "b", "b", "a"}, 1, []bool{true, true, false, true}},
		{"empty string not kept", 4, []string{"", ""}, 0, []bool{true, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewStrings(tt.limit)
			first := map[string]string{}
			for i, v := range tt.add {
				got := p.String(strings.Clone(v))
				if got != v {
					t.Fatalf("String(%q) = %q", v, got)
				}
				f, seen := first[v]
				if !seen {
					first[v] = got
					continue
				}
				if v != "" && sameBytes(f, got) != tt.wantShare[i] {
					t.Errorf("add %d (%q): shared = %v, want %v", i, v, !tt.wantShare[i], tt.wantShare[i])
				}
			}
			if p.Len() != tt.wantLen {
				t.Errorf("Len = %d, want %d", p.Len(), tt.wantLen)
			}
		})
	}
}

func TestStringsKeepsOnlyTheValue(t *testing.T) {
	big := strings.Repeat("x", 4096) + "client"
	p := NewStrings(4)
	got := p.String(big[4096:])
	if got != "client" || sameBytes(got, big[4096:]) {
		t.Fatalf("String of a slice kept the larger string's bytes")
	}
}

func TestPoolValue(t *testing.T) {
	p := New[[]string](1)
	a := p.Value("read write", []string{"read", "write"})
	b := p.Value("read write", []string{"read", "write"})
	if &a[0] != &b[0] {
		t.Error("equal keys did not share the value")
	}
	c := p.Value("admin", []string{"admin"})
	d := p.Value("admin", []string{"admin"})
	if &c[0] == &d[0] {
		t.Error("a full pool kept a new value")
	}
	if p.Len() != 1 {
		t.Errorf("Len = %d, want 1", p.Len())
	}
}

func TestConcurrent(t *testing.T) {
	p := NewStrings(8)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				v := fmt.Sprint((g + i) % 16)
				if got := p.String(v); got != v {
					t.Errorf("String(%q) = %q", v, got)
					return
				}
			}
		})
	}
	wg.Wait()
	if p.Len() != 8 {
		t.Errorf("Len = %d, want 8", p.Len())
	}
}
