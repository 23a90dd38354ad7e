package alert

import "github.com/prometheus/client_golang/prometheus"

var notificationsDesc = prometheus.NewDesc("dbha_alert_notifications_total",
	"Notifications per webhook by outcome: sent, failed (every attempt failed), dropped (the webhook's queue was full).",
	[]string{"webhook", "result"}, nil)

// Describe and Collect make a Notifier a Prometheus collector.
func (n *Notifier) Describe(ch chan<- *prometheus.Desc) { ch <- notificationsDesc }

func (n *Notifier) Collect(ch chan<- prometheus.Metric) {
	for name, c := range n.Counts() {
		for result, v := range map[string]int64{"sent": c.Sent, "failed": c.Failed, "dropped": c.Dropped} {
			ch <- prometheus.MustNewConstMetric(notificationsDesc, prometheus.CounterValue, float64(v), name, result)
		}
	}
}
