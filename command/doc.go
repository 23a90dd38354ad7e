// Package command runs the commands an operator names in the configuration:
// the external check, the promotion hooks, the drill's kill and restart
// commands, reseed's stop and start commands. It owns how such a command
// runs: its argv with placeholders replaced, its environment, bounded by
// the caller's context, and its output kept in the error when it fails.
//
// It decides nothing about what a command's success means; its callers do.
// It never logs, and adds nothing secret to a command: the argv comes from
// the configuration, the environment is this process's plus what the
// caller names.
package command
