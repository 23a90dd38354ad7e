package daemon

import (
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/dbha/dbha/alert"
)

// The alerting rules in docs/ parse with Prometheus's own rule parser, and
// every dbha_ metric they name is one dbha exports.
func TestShippedAlertingRules(t *testing.T) {
	p := parser.NewParser(parser.Options{})
	groups, errs := rulefmt.ParseFile("../docs/prometheus-alerts.yml", false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Error(err)
	}
	if len(errs) > 0 {
		return
	}
	exported := map[string]bool{}
	descs := make(chan *prometheus.Desc, 100)
	for _, c := range []prometheus.Collector{newCollector(New(Options{})), NewBackupStats(), alert.New(nil, alert.Options{}, nil)} {
		c.Describe(descs)
	}
	close(descs)
	name := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range descs {
		if m := name.FindStringSubmatch(d.String()); m != nil {
			exported[m[1]] = true
		}
	}
	rules := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			rules++
			expr, err := p.ParseExpr(r.Expr)
			if err != nil {
				t.Errorf("%s: %v", r.Alert, err)
				continue
			}
			parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
				if v, ok := n.(*parser.VectorSelector); ok && strings.HasPrefix(v.Name, "dbha_") && !exported[v.Name] {
					t.Errorf("rule %s names %s, which dbha does not export", r.Alert, v.Name)
				}
				return nil
			})
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %s has no severity label or no summary", r.Alert)
			}
		}
	}
	if rules < 5 {
		t.Errorf("%d rules parsed", rules)
	}
}
