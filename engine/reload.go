package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/tailorcdp/tailor/audit"
	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/decide"
	"github.com/tailorcdp/tailor/state"
)

// The model sections of the configuration (what is kept and evaluated
// about profiles, and what decisions offer) change without a restart:
// the config file is watched and PUT /v1/admin/config replaces it. The
// other sections (data_dir, http, kafka, embedded, store, events, log,
// shutdown) take effect at the next start; a reload that changes them
// says so.

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
	// Destinations names the destinations added, changed and removed.
	Destinations Changes `json:"destinations"`
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
// those of the YAML document doc, asked for by the admin key labelled by,
// and writes doc to the config file when the engine runs from one. A
// document that does not parse, validate or compile is an error wrapping
// config.ErrInvalid (recorded as config.rejected, without waiting). The
// reload is recorded on the audit topic before anything changes: when the
// record cannot be written, the error wraps audit.ErrNotRecorded and the
// running configuration stays in force.
func (e *Engine) ReloadConfig(ctx context.Context, doc []byte, by string) (any, error) {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	id, sum := audit.NewID(), sha256.Sum256(doc)
	next, compiled, err := e.prepare(doc, "PUT /v1/admin/config")
	if err != nil {
		e.rejected(id, by, "PUT /v1/admin/config", sum, err)
		return nil, err
	}
	res, merged := e.changes(next, compiled)
	res.Persisted = e.configFile
	if err := e.record(ctx, id, by, res, sum); err != nil {
		return nil, err
	}
	if e.configFile != "" {
		if err := writeFileAtomic(e.configFile, doc); err != nil {
			err = fmt.Errorf("keep the new configuration in %s: %w", e.configFile, err)
			e.audit.RecordLater(audit.Entry{ID: id, Action: audit.ConfigFailed, By: by, Detail: map[string]any{"sha256": hex.EncodeToString(sum[:]), "error": err.Error()}})
			return nil, err
		}
	}
	e.apply(merged, compiled, sum, res)
	return res, nil
}

// record writes the config.reloaded entry of a reload about to be put in
// force (the auditor follows a record that may yet be written with an
// action.refused one).
func (e *Engine) record(ctx context.Context, id, by string, res ReloadResult, sum [32]byte) error {
	detail := map[string]any{
		"source":       res.Source,
		"sha256":       hex.EncodeToString(sum[:]),
		"segments":     res.Segments,
		"aggregates":   res.Aggregates,
		"placements":   res.Placements,
		"offers":       res.Offers,
		"destinations": res.Destinations,
	}
	if res.Persisted != "" {
		detail["persisted"] = res.Persisted
	}
	if len(res.RestartNeeded) > 0 {
		detail["restart_needed"] = res.RestartNeeded
	}
	err := e.audit.Record(ctx, audit.Entry{ID: id, Action: audit.ConfigReloaded, By: by, Detail: detail})
	if err != nil {
		e.reloads.WithLabelValues("unrecorded").Inc()
	}
	return err
}

// rejected records, without waiting, a document refused for its content.
// The record names the document by its SHA-256 only: a configuration
// holds secrets, and its problems may quote it.
func (e *Engine) rejected(id, by, source string, sum [32]byte, err error) {
	if !errors.Is(err, config.ErrInvalid) {
		return
	}
	e.audit.RecordLater(audit.Entry{ID: id, Action: audit.ConfigRejected, By: by,
		Detail: map[string]any{"source": source, "sha256": hex.EncodeToString(sum[:]), "problems": len(Problems(err))}})
}

// reloadFile reloads the config file when its content changed. A change
// whose audit record cannot be written is not applied; it is tried again
// at the next check, under the same audit id, until it is recorded.
func (e *Engine) reloadFile(ctx context.Context) {
	// Read under the lock: a reload through the admin API may be writing
	// the file, and what was read before it must not undo it.
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	doc, err := os.ReadFile(e.configFile)
	if err != nil {
		e.log.Warn("config file unreadable; the running configuration stays", "file", e.configFile, "err", err)
		return
	}
	sum := sha256.Sum256(doc)
	if sum == e.configSum {
		return
	}
	first := e.pending.sum != sum
	if first {
		e.pending.sum, e.pending.id = sum, audit.NewID()
	}
	next, compiled, err := e.prepare(doc, e.configFile)
	if err != nil {
		e.configSum = sum // reported once, not every check
		e.reloads.WithLabelValues("rejected").Inc()
		e.rejected(e.pending.id, audit.ByConfigFile, e.configFile, sum, err)
		e.log.Error("config file rejected; the running configuration stays", "file", e.configFile, "err", err)
		return
	}
	res, merged := e.changes(next, compiled)
	if err := e.record(ctx, e.pending.id, audit.ByConfigFile, res, sum); err != nil {
		if first {
			e.log.Error("config file change not applied: its audit record could not be written; tried again until it is", "file", e.configFile, "err", err)
		}
		return
	}
	e.apply(merged, compiled, sum, res)
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
			e.reloadFile(ctx)
		}
	}
}

// prepare parses and compiles a new document, the way the running
// configuration was built.
func (e *Engine) prepare(doc []byte, source string) (*config.Config, Compiled, error) {
	next, compiled, err := check(doc, source, e.cfg.Reparse, e.cfg.Clock)
	if err != nil {
		return nil, Compiled{}, err
	}
	next.Reparse = e.cfg.Reparse
	return next, compiled, nil
}

// changes returns what putting a prepared configuration in force would
// change, and the configuration that would then run: next with the
// running start-only sections.
func (e *Engine) changes(next *config.Config, compiled Compiled) (ReloadResult, *config.Config) {
	old := e.processor.Reads().Model()
	res := ReloadResult{
		Success:    true,
		Source:     next.Source,
		Segments:   segmentChanges(old.Segments, compiled.Store.Segments),
		Aggregates: diff(e.cfg.Aggregates, next.Aggregates),
		Placements: len(compiled.Catalog.Placements()),
		Offers:     len(next.Offers),

		Destinations: destinationChanges(e.cfg.Destinations, next.Destinations),
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
	return res, &merged
}

// apply puts a prepared configuration in force: merged and res are what
// changes returned.
func (e *Engine) apply(merged *config.Config, compiled Compiled, sum [32]byte, res ReloadResult) {
	model := compiled.Store.Model
	e.processor.SetModel(&model)
	e.decider.Reload(e.decideConfig(merged, compiled))
	e.deliverer.SetDestinations(compiled.Destinations)
	e.cfg = merged
	e.configSum = sum
	e.reloads.WithLabelValues("applied").Inc()
	e.log.Info("configuration reloaded", "source", res.Source,
		"segments_added", res.Segments.Added, "segments_changed", res.Segments.Changed, "segments_removed", res.Segments.Removed,
		"restart_needed", res.RestartNeeded)
}

// startOnly reports whether a configuration section applies only at start.
func startOnly(section string) bool {
	switch section {
	case "data_dir", "http", "kafka", "embedded", "store", "events", "log", "shutdown":
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
