// Package consul is dbha's use of Consul: the observations dbha managers
// share about each cluster (so that a manager partitioned from a primary
// hears that others still reach it), and, as promotion lands, the writer and
// reader services, the per-cluster leader lock, the anti-flap records and
// the claims of scheduled backup slots.
//
// Everything lives under the KV prefix dbha/<cluster>/. This package stores
// and reads; it must not decide failover.
package consul
