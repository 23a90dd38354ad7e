// Package alert sends dbha's notifications to webhooks: a finding that
// appears fires, one that clears resolves, and a recovery or a failed
// scheduled backup fires once. Each webhook has its own queue and sender,
// so a slow or dead receiver delays nothing else: Notify never blocks.
// Deliveries are retried a bounded number of times with back-off; what
// fails is counted and logged once per run of failures.
package alert
