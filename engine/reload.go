package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/decide"
	"github.com/tailorcdp/tailor/state"
)

// The model sections of the configuration (what is kept and evaluated
// about profiles, and what decisions offer) change without a restart:
// the config file is watched and PUT /v1/admin/config replaces it. The
// other sections (data_dir, http, kafka, embedded, store, events, log)
// take effect at the next start; a reload that changes them says so.

// ReloadResult says what a reload changed.
type ReloadResult struct {
	Success bool   `json:"success"`
	Source  string `json:"source"`
	// Persisted is the config file the new document was written to, so
	// that a restart keeps it; empty when the engine runs the sample.
	Persisted  string  `json:"persisted,omitempty"`
	Segments   Changes `json:"segments"`
	Aggregates Changes `json:"aggregates"`
	Placements int     `json:"placements"`
	Offers     int     `json:"offers"`
	// RestartNeeded lists the sections that differ from the running
	// configuration but apply only at start: they were not changed.
	RestartNeeded []string `json:"restart_needed,omitempty"`
}

// Changes names what a reload added, changed and removed. Changed and new
// segments are backfilled over every profile in the background
// (tailor_backfill_remaining_profiles in /metrics).
type Changes struct {
	Added   []string `json:"added,omitempty"`
	Changed []string `json:"changed,omitempty"`
	Removed []string `json:"removed,omitempty"`
}

// configCheckInterval is how often the config file is read for changes.
const configCheckInterval = 2 * time.Second

// ReloadConfig replaces the running configuration's model sections with
// those of the YAML document doc, and writes doc to the config file when
// the engine runs from one. A document that does not parse, validate or
// compile is an error wrapping config.ErrInvalid, and the running
// configuration stays in force.
func (e *Engine) ReloadConfig(doc []byte) (any, error) {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	next, compiled, err := e.prepare(doc, "PUT /v1/admin/config")
	if err != nil {
		return nil, err
	}
	persisted := ""
	if e.configFile != "" {
		if err := writeFileAtomic(e.configFile, doc); err != nil {
			return nil, fmt.Errorf("keep the new configuration in %s: %w", e.configFile, err)
		}
		persisted = e.configFile
	}
	res := e.apply(next, compiled, sha256.Sum256(doc))
	res.Persisted = persisted
	return res, nil
}

// reloadFile reloads the config file when its content changed.
func (e *Engine) reloadFile() {
	doc, err := os.ReadFile(e.configFile)
	if err != nil {
		e.log.Warn("config file unreadable; the running configuration stays", "file", e.configFile, "err", err)
		return
	}
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	sum := sha256.Sum256(doc)
	if sum == e.configSum {
		return
	}
	next, compiled, err := e.prepare(doc, e.configFile)
	if err != nil {
		e.configSum = sum // reported once, not every check
		e.reloads.WithLabelValues("rejected").Inc()
		e.log.Error("config file rejected; the running configuration stays", "file", e.configFile, "err", err)
		return
	}
	e.apply(next, compiled, sum)
}

// watchConfig reloads the config file when it changes, until ctx ends.
func (e *Engine) watchConfig(ctx context.Context) {
	t := time.NewTicker(configCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.reloadFile()
		}
	}
}

// prepare parses and compiles a new document, the way the running
// configuration was built.
func (e *Engine) prepare(doc []byte, source string) (*config.Config, Compiled, error) {
	parse := e.cfg.Reparse
	if parse == nil {
		parse = config.Parse
	}
	next, err := parse(doc, source)
	if err != nil {
		return nil, Compiled{}, err
	}
	next.Clock, next.Reparse = e.cfg.Clock, e.cfg.Reparse
	compiled, err := Compile(next)
	if err != nil {
		return nil, Compiled{}, fmt.Errorf("%w: %w", config.ErrInvalid, err)
	}
	return next, compiled, nil
}

// apply puts a prepared configuration's model sections in force.
func (e *Engine) apply(next *config.Config, compiled Compiled, sum [32]byte) ReloadResult {
	old := e.processor.Reads().Model()
	res := ReloadResult{
		Success:    true,
		Source:     next.Source,
		Segments:   segmentChanges(old.Segments, compiled.Store.Segments),
		Aggregates: diff(e.cfg.Aggregates, next.Aggregates),
		Placements: len(compiled.Catalog.Placements()),
		Offers:     len(next.Offers),
	}
	// The start-only sections stay as they run; those that differ are
	// reported.
	merged := *next
	running, kept := reflect.ValueOf(e.cfg).Elem(), reflect.ValueOf(&merged).Elem()
	for i := range running.NumField() {
		name, _, _ := strings.Cut(running.Type().Field(i).Tag.Get("yaml"), ",")
		if !startOnly(name) {
			continue
		}
		if !reflect.DeepEqual(running.Field(i).Interface(), kept.Field(i).Interface()) {
			res.RestartNeeded = append(res.RestartNeeded, name)
		}
		kept.Field(i).Set(running.Field(i))
	}
	model := compiled.Store.Model
	e.processor.SetModel(&model)
	e.decider.Reload(e.decideConfig(next, compiled))
	e.cfg = &merged
	e.configSum = sum
	e.reloads.WithLabelValues("applied").Inc()
	e.log.Info("configuration reloaded", "source", next.Source,
		"segments_added", res.Segments.Added, "segments_changed", res.Segments.Changed, "segments_removed", res.Segments.Removed,
		"restart_needed", res.RestartNeeded)
	return res
}

// startOnly reports whether a configuration section applies only at start.
func startOnly(section string) bool {
	switch section {
	case "data_dir", "http", "kafka", "embedded", "store", "events", "log":
		return true
	}
	return false
}

func segmentChanges(old, next *state.Segments) Changes {
	before := make(map[string]uint64)
	for _, s := range old.List() {
		before[s.Name] = s.Fingerprint
	}
	after := make(map[string]uint64)
	for _, s := range next.List() {
		after[s.Name] = s.Fingerprint
	}
	return diff(before, after)
}

func diff[V comparable](before, after map[string]V) Changes {
	var c Changes
	for name, v := range after {
		w, ok := before[name]
		switch {
		case !ok:
			c.Added = append(c.Added, name)
		case v != w:
			c.Changed = append(c.Changed, name)
		}
	}
	for name := range before {
		if _, ok := after[name]; !ok {
			c.Removed = append(c.Removed, name)
		}
	}
	for _, l := range []*[]string{&c.Added, &c.Changed, &c.Removed} {
		sort.Strings(*l)
	}
	return c
}

// decideConfig returns the decide configuration of a compiled
// configuration.
func (e *Engine) decideConfig(cfg *config.Config, compiled Compiled) decide.Config {
	return decide.Config{
		Catalog:        compiled.Catalog,
		Segments:       compiled.Store.Segments,
		Interests:      compiled.Store.Interests,
		Products:       compiled.Store.Products,
		ConsentPurpose: cfg.Decide.ConsentPurpose,
		IdentitySecret: cfg.Decide.IdentitySecret,
		ReservationTTL: time.Duration(cfg.Decide.ReservationTTL),
		Logger:         e.log,
		Now:            cfg.Clock,
	}
}

// writeFileAtomic replaces path with data: written beside it, then
// renamed, so that a reader never sees half of it.
func writeFileAtomic(path string, data []byte) error {
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	err = errors.Join(err, tmp.Chmod(mode), tmp.Sync(), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
