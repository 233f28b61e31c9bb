// Package config owns tailor's configuration: its structure, defaults, the
// YAML file, TAILOR_* environment variables and command-line flags. Each
// option is declared once, in options(), which gives its flag, its
// environment variable, its YAML key and its help text; precedence is
// defaults < file < environment < flags.
package config
