package gc

import (
	"testing"
	"time"
)

func TestJitter(t *testing.T) {
	const d = 10 * time.Minute
	lo, hi := d, time.Duration(0)
	for range 10000 {
		j := jitter(d)
		if j < d/2 || j >= d*3/2 {
			t.Fatalf("jitter(%v) = %v, want in [%v, %v)", d, j, d/2, d*3/2)
		}
		lo, hi = min(lo, j), max(hi, j)
	}
	// The draws spread over the range.
	if lo > d*6/10 || hi < d*14/10 {
		t.Errorf("jitter(%v) drew only from [%v, %v]", d, lo, hi)
	}
	if j := jitter(time.Nanosecond); j != 0 {
		t.Errorf("jitter(1ns) = %v, want 0", j)
	}
}
