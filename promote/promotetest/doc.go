// Package promotetest holds in-memory stand-ins for promote's own
// interfaces (Store, Engine), for unit tests of the recovery path in
// promote and in the daemon. They are fakes of dbha's interfaces only: no
// database or Consul is imitated here, and integration tests use the real
// ones.
package promotetest
