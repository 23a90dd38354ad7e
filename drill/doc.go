// Package drill measures a failover the way clients live it: a client
// writes numbered rows without pause through the writer endpoint (Consul
// DNS), the primary is killed, and the drill measures the recovery time
// objective (last acknowledged write on the old primary to the first on the
// new one) and the acknowledged rows the new primary lacks, then brings the
// old primary back and repeats.
//
// It breaks only what it is given a Breaker for (the lab, or an operator's
// kill and restart commands). It decides nothing about failover: dbha's
// monitor does that, as in production.
package drill
