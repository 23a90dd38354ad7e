package alert

import (
	"encoding/json"
	"time"

	"github.com/dbha/dbha/checks"
)

// Status says whether an event's condition holds (firing) or has ended
// (resolved).
type Status string

const (
	Firing   Status = "firing"
	Resolved Status = "resolved"
)

// Event is one notification.
type Event struct {
	Status   Status          `json:"status"`
	Cluster  string          `json:"cluster"`
	Code     checks.Code     `json:"code"`
	Level    checks.Severity `json:"level"`
	Instance string          `json:"instance,omitempty"`
	Summary  string          `json:"summary"`
	// StartsAt is when the condition began; EndsAt when it ended (zero
	// while firing). A one-off event (a recovery) ends when it happens.
	StartsAt time.Time `json:"starts_at"`
	EndsAt   time.Time `json:"ends_at,omitzero"`
	// Manager is the dbha manager that saw it.
	Manager string `json:"manager"`
}

// key identifies the condition an event is about: a resolved event has
// the key of the firing one it ends.
func (e Event) key() string { return e.Cluster + "\x00" + string(e.Code) + "\x00" + e.Instance }

// FromFinding is the event of a finding that appeared (Firing) or cleared
// (Resolved) at at.
func FromFinding(cluster, manager string, f checks.Finding, s Status, since, at time.Time) Event {
	e := Event{Status: s, Cluster: cluster, Code: f.Code, Level: f.Severity, Instance: f.Instance, Summary: f.Summary,
		StartsAt: since, Manager: manager}
	if s == Resolved {
		e.EndsAt = at
	}
	return e
}

// jsonPayload is the json format's body: one event, with a version so
// that receivers can tell it from later forms.
func jsonPayload(e Event) ([]byte, error) {
	return json.Marshal(struct {
		Version string `json:"version"`
		Event
	}{"dbha/1", e})
}

// amAlert is one alert of the Alertmanager v2 API (POST /api/v2/alerts,
// the postableAlert model).
type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// oneOffFor is how long Alertmanager shows a one-off event (a recovery) as
// firing before it resolves by itself: it has no notion of an event that
// happens once.
const oneOffFor = 5 * time.Minute

// amPayload is the alertmanager format's body for events. The labels
// identify the condition and are the same on every manager, so that
// Alertmanager merges what several managers send; the manager and the
// summary are annotations.
func amPayload(events []Event) ([]byte, error) {
	out := make([]amAlert, 0, len(events))
	for _, e := range events {
		labels := map[string]string{"alertname": string(e.Code), "cluster": e.Cluster, "severity": string(e.Level), "source": "dbha"}
		if e.Instance != "" {
			labels["instance"] = e.Instance
		}
		a := amAlert{Labels: labels, Annotations: map[string]string{"summary": e.Summary, "manager": e.Manager},
			StartsAt: e.StartsAt, EndsAt: e.EndsAt}
		if e.Status == Firing && !e.EndsAt.IsZero() {
			a.EndsAt = e.EndsAt.Add(oneOffFor)
		}
		out = append(out, a)
	}
	return json.Marshal(out)
}
