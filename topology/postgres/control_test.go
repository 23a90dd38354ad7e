package postgres

import (
	"context"
	"testing"
	"time"
)

func TestPromoteWait(t *testing.T) {
	for _, tc := range []struct {
		name string
		left time.Duration // 0: no deadline
		want int
	}{
		{"no deadline: pg_promote's default", 0, 60},
		{"a step's 30 s", 30*time.Second + 500*time.Millisecond, 30},
		{"more than pg_promote's default", 5 * time.Minute, 60},
		{"under a second: at least one", 300 * time.Millisecond, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.left > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.left)
				defer cancel()
			}
			if got := promoteWait(ctx); got != tc.want {
				t.Errorf("promoteWait = %d, want %d", got, tc.want)
			}
		})
	}
}
