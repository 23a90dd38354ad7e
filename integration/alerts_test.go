package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dbha/dbha/alert"
	"github.com/dbha/dbha/checks"
)

// hookRecorder is a webhook receiver that keeps every body posted to it.
type hookRecorder struct {
	*httptest.Server
	mu     sync.Mutex
	bodies [][]byte
	at     []time.Time // when each body arrived
}

func newHookRecorder(t *testing.T) *hookRecorder {
	h := &hookRecorder{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.bodies = append(h.bodies, b)
		h.at = append(h.at, time.Now())
		h.mu.Unlock()
	}))
	t.Cleanup(h.Close)
	return h
}

// arrived is when the i-th body arrived.
func (h *hookRecorder) arrived(i int) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.at[i]
}

func (h *hookRecorder) all() [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]byte(nil), h.bodies...)
}

// TestAlertsOnAFailover runs `dbha run` with two webhooks at
// min_level critical: dbha's own json to a receiver of the test's, and a
// real Alertmanager, which passes what it gets on to another. A killed
// MariaDB primary fires DeadPrimary and then resolves it, once each and
// in that order, on both; nothing under critical is sent.
func TestAlertsOnAFailover(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	l := binLab(t, bin)
	c := consulClient(t, l)
	direct, relayed := newHookRecorder(t), newHookRecorder(t)
	am, err := StartAlertmanager(t.Context(), t.TempDir(), relayed.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(am.Stop)
	text, err := os.ReadFile(l.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(t.TempDir(), "dbha.yaml")
	text = fmt.Appendf(text, "alerts:\n  webhooks:\n    - name: direct\n      url: %s\n      min_level: critical\n    - name: am\n      url: %s\n      format: alertmanager\n      min_level: critical\n", direct.URL, am.URL)
	if err := os.WriteFile(config, text, 0o600); err != nil {
		t.Fatal(err)
	}
	startDbhaRunWith(t, bin, config, "alerter")
	first := addr(t, l, "mariadb-1")
	waitPublishedWriter(t, c, mariadbCluster, first)
	killTree(t, l, "mariadb-1")
	waitRecoveryOf(t, bin, l, mariadbCluster, first, 60*time.Second)

	// dbha's json: DeadPrimary firing, then resolved.
	var dead []alert.Event
	var deadAt []time.Time
	waitUntil(t, time.Minute, "DeadPrimary resolved on the json webhook", func() error {
		dead, deadAt = nil, nil
		for i, b := range direct.all() {
			var e alert.Event
			if err := json.Unmarshal(b, &e); err != nil {
				return fmt.Errorf("payload %s: %v", b, err)
			}
			if e.Level != checks.Critical {
				t.Errorf("a %s event reached a critical-only webhook: %s", e.Level, b)
			}
			if e.Code == checks.DeadPrimary {
				dead, deadAt = append(dead, e), append(deadAt, direct.arrived(i))
			}
		}
		if len(dead) < 2 {
			return fmt.Errorf("%d DeadPrimary events", len(dead))
		}
		return nil
	})
	time.Sleep(2 * time.Second) // nothing more should come
	if len(dead) != 2 || dead[0].Status != alert.Firing || dead[1].Status != alert.Resolved || dead[0].Instance != first ||
		dead[0].Cluster != mariadbCluster || !dead[1].EndsAt.After(dead[0].StartsAt) {
		t.Fatalf("DeadPrimary events %+v, want one firing and then one resolved, about %s", dead, first)
	}
	// From the probe cycle that found it (StartsAt, EndsAt) to the
	// receiver: the rest of that cycle, the analysis, the queue, the POST.
	t.Logf("json webhook: DeadPrimary firing delivered %v after the cycle that found it, resolved %v after the cycle that cleared it: %s",
		deadAt[0].Sub(dead[0].StartsAt).Round(time.Millisecond), deadAt[1].Sub(dead[1].EndsAt).Round(time.Millisecond), dead[0].Summary)

	// Alertmanager's own notifications of DeadPrimary: firing, then resolved.
	type amNotification struct {
		Status string `json:"status"`
		Alerts []struct {
			Status string            `json:"status"`
			Labels map[string]string `json:"labels"`
		} `json:"alerts"`
	}
	var seen []string
	waitUntil(t, time.Minute, "Alertmanager to notify DeadPrimary resolved", func() error {
		seen = nil
		for _, b := range relayed.all() {
			var n amNotification
			if err := json.Unmarshal(b, &n); err != nil {
				return fmt.Errorf("payload %s: %v", b, err)
			}
			for _, a := range n.Alerts {
				if a.Labels["alertname"] == string(checks.DeadPrimary) {
					seen = append(seen, a.Status)
					if a.Labels["cluster"] != mariadbCluster || a.Labels["instance"] != first || a.Labels["severity"] != "critical" {
						t.Errorf("Alertmanager's alert has labels %v", a.Labels)
					}
				}
			}
		}
		if len(seen) < 2 {
			return fmt.Errorf("notified %v", seen)
		}
		return nil
	})
	if len(seen) != 2 || seen[0] != "firing" || seen[1] != "resolved" {
		t.Fatalf("Alertmanager notified DeadPrimary %v, want firing then resolved", seen)
	}
}
