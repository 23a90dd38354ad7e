// Package config holds dbha's configuration: the Config struct, its defaults
// and its validation.
//
// It owns the shape of the configuration and the rules a valid one obeys. It
// must not read files, flags or the environment to build a Config: cmd/dbha
// binds those (viper stays there) and hands a decoded Config in. The one
// exception is Secret.Read, which reads a password from the file or variable
// the configuration names, at the moment a caller needs it, so that no
// password is ever held in the Config itself.
//
// Validate stats the TLS files the configuration names (they must exist,
// and a private key must be its owner's only) but reads none of them:
// tlsconfig reads and parses them when a connection's config is built.
//
// It imports no package that talks to a server (only checks, schedule,
// topology's model and tlsconfig, which needs the standard library alone),
// so validating a configuration pulls in no database driver.
package config
