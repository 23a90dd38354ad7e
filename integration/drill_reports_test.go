package integration

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/dbha/dbha/consul"
	"github.com/dbha/dbha/drill"
)

// Drill reports are kept in Consul, the newest KeepDrills per cluster, and
// read back newest first.
func TestDrillReportsKept(t *testing.T) {
	l := sharedLab(t)
	c := consulClient(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cluster := "drill-reports-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for i := range consul.KeepDrills + 2 {
		s := drill.Summary{Cluster: cluster, Fault: drill.Fault{Name: "kill"}, RunsAsked: i, Started: t0.Add(time.Duration(i) * time.Minute),
			Runs: []drill.Run{{N: 1, Verdict: drill.Verdict{InFlight: []int64{int64(i)}}}}}
		if err := c.PutDrill(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.Drills(ctx, cluster, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != consul.KeepDrills {
		t.Fatalf("%d reports kept, want %d", len(got), consul.KeepDrills)
	}
	if got[0].RunsAsked != consul.KeepDrills+1 || got[len(got)-1].RunsAsked != 2 {
		t.Errorf("kept reports %d..%d, want the newest first (%d..2)", got[0].RunsAsked, got[len(got)-1].RunsAsked, consul.KeepDrills+1)
	}
	if len(got[0].Runs) != 1 || len(got[0].Runs[0].InFlight) != 1 {
		t.Errorf("a small report lost its runs: %+v", got[0].Runs)
	}
	if few, err := c.Drills(ctx, cluster, 3); err != nil || len(few) != 3 || few[0].RunsAsked != consul.KeepDrills+1 {
		t.Errorf("the last 3: %d reports, %v", len(few), err)
	}
}
