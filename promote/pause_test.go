package promote_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dbha/dbha/promote"
)

// TestPauseRefusesAutomaticRecovery: a paused cluster gets no automatic
// recovery (nothing changed, nothing recorded, the error says who paused
// and how to resume); an operator's own promotion goes ahead; once
// resumed, the automatic recovery does too.
func TestPauseRefusesAutomaticRecovery(t *testing.T) {
	r := newRecoverRig(t, 3)
	a, b := r.addrs[0], r.addrs[1]
	r.store.SetPaused("c", promote.Pause{By: "alice@ops1", At: t0, Reason: "kernel upgrade"})
	calls := len(r.cluster.Calls())
	rec, err := r.failover(t, a)
	var paused *promote.PausedError
	if rec != nil || !errors.Is(err, promote.ErrPaused) || !errors.As(err, &paused) || paused.Lift() != "dbha resume --cluster c" {
		t.Fatalf("automatic recovery of a paused cluster: %+v, %v; want a *PausedError", rec, err)
	}
	for _, want := range []string{"alice@ops1", "kernel upgrade", "2026-12-06T01:00:00Z"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if got := r.cluster.Calls()[calls:]; len(got) != 0 || len(r.store.Records("c")) != 0 {
		t.Fatalf("the refused recovery changed %v, or recorded %d recoveries", got, len(r.store.Records("c")))
	}
	r.store.SetPaused("c", promote.Pause{})
	rec, err = promote.Recover(context.Background(), r.env, "c", seen(t),
		promote.Trigger{Reason: "DeadPrimary", Automatic: true, Detected: r.now, Primary: a})
	if err != nil || rec.Plan.NewPrimary != b {
		t.Fatalf("automatic recovery once resumed: %+v, %v; want %s promoted", rec, err, b)
	}
}

// A paused cluster still takes an operator's promotion.
func TestPauseLeavesManualPromotion(t *testing.T) {
	r := newRecoverRig(t, 3)
	r.store.SetPaused("c", promote.Pause{By: "alice", At: t0})
	rec, err := promote.Recover(context.Background(), r.env, "c", promote.Request{To: r.addrs[1]}, promote.Trigger{Reason: "requested with dbha promote"})
	if err != nil || rec.Plan.NewPrimary != r.addrs[1] {
		t.Fatalf("switchover of a paused cluster: %+v, %v", rec, err)
	}
}
