package engine

import (
	"fmt"
	"strings"
	"time"

	"github.com/tailorcdp/tailor/config"
)

// Check parses, validates and compiles a configuration document the way a
// reload does, starting nothing: parse is how the running configuration
// was built (config.Loader.Parse, with the same environment and flags;
// nil means config.Parse). A document with problems is an error wrapping
// config.ErrInvalid, whose Problems are the messages a reload gives.
func Check(doc []byte, source string, parse func(data []byte, source string) (*config.Config, error)) (*config.Config, Compiled, error) {
	return check(doc, source, parse, nil)
}

// check is Check with the clock the compiled rules read (nil: the wall
// clock), as a reload keeps the running one.
func check(doc []byte, source string, parse func(data []byte, source string) (*config.Config, error), clock func() time.Time) (*config.Config, Compiled, error) {
	if parse == nil {
		parse = config.Parse
	}
	cfg, err := parse(doc, source)
	if err != nil {
		return nil, Compiled{}, err
	}
	cfg.Clock = clock
	compiled, err := Compile(cfg)
	if err != nil {
		return nil, Compiled{}, fmt.Errorf("%w: %w", config.ErrInvalid, err)
	}
	return cfg, compiled, nil
}

// Problems splits a rejection into its problems, one per line, as the
// admin API lists them.
func Problems(err error) []string {
	var out []string
	for _, line := range strings.Split(err.Error(), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}
