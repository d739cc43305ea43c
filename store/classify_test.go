package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/extauthz/extauthz/store"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		want   store.Outcome
		failed bool
		up     int // 1 up, 0 down, -1 says nothing
	}{
		{"nil", nil, store.OutcomeOK, false, 1},
		{"not found", fmt.Errorf("get: %w", store.ErrNotFound), store.OutcomeNotFound, false, 1},
		{"lease lost", fmt.Errorf("release: %w", store.ErrLeaseLost), store.OutcomeLeaseLost, false, 1},
		{"lease lost to a deletion", fmt.Errorf("%w: %w", store.ErrNotFound, store.ErrLeaseLost), store.OutcomeLeaseLost, false, 1},
		{"conflict", fmt.Errorf("rewrite: %w", store.ErrConflict), store.OutcomeConflict, false, 1},
		{"invalid", fmt.Errorf("put: %w", store.ErrInvalid), store.OutcomeInvalid, true, 1},
		{"unreadable", fmt.Errorf("open: %w", store.ErrUnreadable), store.OutcomeUnreadable, true, -1},
		{"unavailable", fmt.Errorf("get: %w", store.ErrUnavailable), store.OutcomeUnavailable, true, 0},
		{"cancelled", context.Canceled, store.OutcomeUnavailable, true, 0},
		{"deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), store.OutcomeUnavailable, true, 0},
		{"invalid before unavailable", fmt.Errorf("%w: %w", store.ErrUnavailable, store.ErrInvalid), store.OutcomeInvalid, true, 1},
		{"other", errors.New("boom"), store.OutcomeError, true, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := store.Classify(tt.err)
			if o != tt.want {
				t.Fatalf("Classify = %q, want %q", o, tt.want)
			}
			if o.Failed() != tt.failed {
				t.Errorf("%q.Failed() = %v, want %v", o, o.Failed(), tt.failed)
			}
			up, known := o.StoreUp()
			got := -1
			if known {
				got = 0
				if up {
					got = 1
				}
			}
			if got != tt.up {
				t.Errorf("%q.StoreUp() = %v, %v; want %d (1 up, 0 down, -1 unknown)", o, up, known, tt.up)
			}
		})
	}
}
