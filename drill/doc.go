// Package drill measures failures the way clients live them, and checks
// what the cluster promised: W concurrent writers (Writers) write unique
// ids through the writer endpoint (Consul DNS, resolved on every
// reconnect), each write recorded with when it was sent, when it was
// acknowledged — or failed, or got no answer — and the identity of the
// server that acknowledged it; a fault is injected and healed; every
// server's rows are read back; and Analyze, a pure function, gives the
// verdict: acknowledged writes lost, the writes in flight at the fault
// (the commits actually at risk), two writers (the split-brain window),
// the RTO (fault to the first write acknowledged by a new primary), a
// false failover, and the state after the heal.
//
// Drill runs it N times and Summarise totals the runs, failed ones
// included; MatrixMarkdown renders summaries as docs/faults.md.
//
// It breaks only through the Faults it is given (the lab of hosts, or a
// Breaker through BreakerFaults), and decides nothing about failover:
// dbha's managers do that, as in production. It must not start servers.
package drill
