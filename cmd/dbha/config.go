package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/dbha/dbha/config"
)

// envPrefix starts every environment variable that overrides a key:
// DBHA_STATE_DIR, DBHA_CONSUL_ADDRESS, DBHA_CLUSTERS_0_USER, ...
const envPrefix = "DBHA_"

// envNotKeys are DBHA_ variables that are not configuration keys.
var envNotKeys = []string{"DBHA_CONFIG", "DBHA_CONSUL_BIN", "DBHA_PG_BINDIR", stepTrapEnv}

// configPath picks the file: --config, else $DBHA_CONFIG, else ./dbha.yaml.
func configPath(flag string, lookupEnv func(string) (string, bool)) string {
	if flag != "" {
		return flag
	}
	if v, ok := lookupEnv("DBHA_CONFIG"); ok && v != "" {
		return v
	}
	return "dbha.yaml"
}

// loadConfig reads the YAML file, applies DBHA_* overrides from environ,
// decodes onto config.Default() and validates. Every error is a
// *config.Error or a join of them, naming the key and the file.
func loadConfig(path string, environ []string) (config.Config, error) {
	cfg := config.Default()
	// Map keys may be host:port addresses, which hold dots: viper must not
	// read a dot as a path separator.
	v := viper.NewWithOptions(viper.KeyDelimiter("::"))
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	if err := v.ReadInConfig(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return cfg, &config.Error{File: path, Msg: "no such file: give --config, set DBHA_CONFIG, or run `dbha lab up` for a ready dbha.yaml"}
		}
		return cfg, &config.Error{File: path, Msg: err.Error()}
	}
	settings := v.AllSettings()
	if err := applyEnv(settings, environ, path); err != nil {
		return cfg, err
	}
	var md mapstructure.Metadata
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:           &cfg,
		Metadata:         &md,
		WeaklyTypedInput: true,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.TextUnmarshallerHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		),
	})
	if err != nil {
		return cfg, err
	}
	if err := dec.Decode(settings); err != nil {
		return cfg, &config.Error{File: path, Msg: strings.ReplaceAll(err.Error(), "\n", "; ")}
	}
	if len(md.Unused) > 0 {
		slices.Sort(md.Unused)
		var errs []error
		for _, k := range md.Unused {
			errs = append(errs, &config.Error{File: path, Key: k, Msg: "unknown key (check the spelling; see the README's configuration reference)"})
		}
		return cfg, errors.Join(errs...)
	}
	resolvePaths(&cfg, filepath.Dir(path))
	cfg = config.WithDefaults(cfg)
	return cfg, config.Validate(cfg, path)
}

// resolvePaths makes file names in the configuration relative to the
// configuration file, which is what an operator who writes
// "password_file: secrets/dbha.pw" means.
func resolvePaths(cfg *config.Config, base string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	abs(&cfg.StateDir)
	abs(&cfg.Consul.TokenFile)
	abs(&cfg.Consul.TLS.CAFile)
	abs(&cfg.Consul.TLS.CertFile)
	abs(&cfg.Consul.TLS.KeyFile)
	abs(&cfg.HTTP.TokenFile)
	abs(&cfg.HTTP.TLS.CertFile)
	abs(&cfg.HTTP.TLS.KeyFile)
	abs(&cfg.HTTP.TLS.ClientCAFile)
	for i := range cfg.Clusters {
		if !config.IsS3Repository(cfg.Clusters[i].Backup.Repository) {
			abs(&cfg.Clusters[i].Backup.Repository)
		}
		abs(&cfg.Clusters[i].Backup.EncryptionKeyFile)
		abs(&cfg.Clusters[i].Backup.S3.SecretKeyFile)
		abs(&cfg.Clusters[i].Backup.PasswordFile)
		abs(&cfg.Clusters[i].Drill.PasswordFile)
		abs(&cfg.Clusters[i].Promotion.Apply.PasswordFile)
		abs(&cfg.Clusters[i].PasswordFile)
		abs(&cfg.Clusters[i].Replication.PasswordFile)
	}
}

// applyEnv overrides settings with DBHA_* variables. A variable names a key
// path in upper case with "_" between the parts and list indexes as numbers.
// A DBHA_ variable that names no key is an error, so a typo never goes
// unnoticed, unless a password_env or token_env in the file names it.
func applyEnv(settings map[string]any, environ []string, file string) error {
	secrets := secretEnvNames(settings)
	var errs []error
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, envPrefix) || slices.Contains(envNotKeys, name) || secrets[name] {
			continue
		}
		tokens := strings.Split(strings.ToLower(strings.TrimPrefix(name, envPrefix)), "_")
		if err := setPath(settings, reflect.TypeFor[config.Config](), tokens, value, ""); err != nil {
			errs = append(errs, &config.Error{File: file, Key: name, Msg: err.Error()})
		}
	}
	return errors.Join(errs...)
}

// setPath walks typ along tokens, matching the longest field name at each
// level, and sets value at that place in the settings tree.
func setPath(tree map[string]any, typ reflect.Type, tokens []string, value, at string) error {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	for n := len(tokens); n >= 1; n-- {
		key := strings.Join(tokens[:n], "_")
		field, ok := fieldByKey(typ, key)
		if !ok {
			continue
		}
		rest, path := tokens[n:], join(at, key)
		ft := field.Type
		switch {
		case len(rest) == 0:
			tree[key] = value
			return nil
		case ft.Kind() == reflect.Struct:
			sub, _ := tree[key].(map[string]any)
			if sub == nil {
				sub = map[string]any{}
				tree[key] = sub
			}
			return setPath(sub, ft, rest, value, path)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			return setInList(tree, key, ft.Elem(), rest, value, path)
		}
	}
	return fmt.Errorf("names no configuration key (under %q)", orRoot(at))
}

func setInList(tree map[string]any, key string, elem reflect.Type, tokens []string, value, at string) error {
	i, err := strconv.Atoi(tokens[0])
	list, _ := tree[key].([]any)
	if err != nil || i < 0 || i >= len(list) {
		return fmt.Errorf("%s[%s] is not in the file: only entries the file has can be overridden", at, tokens[0])
	}
	entry, ok := list[i].(map[string]any)
	if !ok {
		return fmt.Errorf("%s[%d] is not a mapping", at, i)
	}
	return setPath(entry, elem, tokens[1:], value, fmt.Sprintf("%s[%d]", at, i))
}

func fieldByKey(typ reflect.Type, key string) (reflect.StructField, bool) {
	if typ.Kind() != reflect.Struct {
		return reflect.StructField{}, false
	}
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if tag == key {
			return f, true
		}
		if opts == "squash" { // an embedded struct whose keys sit at this level
			if sub, ok := fieldByKey(f.Type, key); ok {
				return sub, true
			}
		}
	}
	return reflect.StructField{}, false
}

// secretEnvNames collects the variables the file names as password_env or
// token_env; they hold secrets, not overrides.
func secretEnvNames(tree any) map[string]bool {
	out := map[string]bool{}
	var walk func(any)
	walk = func(n any) {
		switch t := n.(type) {
		case map[string]any:
			for k, v := range t {
				if s, ok := v.(string); ok && strings.HasSuffix(k, "_env") {
					out[s] = true
				}
				walk(v)
			}
		case []any:
			for _, v := range t {
				walk(v)
			}
		}
	}
	walk(tree)
	return out
}

func join(at, key string) string {
	if at == "" {
		return key
	}
	return at + "." + key
}

func orRoot(at string) string {
	if at == "" {
		return "the top level"
	}
	return at
}

// readSecret resolves a configured secret from its file or variable.
func readSecret(s config.Secret) (string, error) {
	return s.Read(os.LookupEnv)
}
