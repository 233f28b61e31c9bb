package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/engine"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

func exportCommand() *command {
	var out string
	return &command{
		name:    "export",
		summary: "write every profile of the local partition stores as NDJSON (the engine must be stopped)",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&out, "out", "-", "output file; - for standard output")
		},
		run: func(ctx context.Context, cfg *config.Config, _ *flag.FlagSet, stdout, stderr io.Writer) error {
			w := stdout
			if out != "-" {
				f, err := os.Create(out)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			n, err := exportProfiles(ctx, cfg, w)
			fmt.Fprintf(stderr, "exported %d profiles\n", n)
			return err
		},
	}
}

// exportProfiles writes the profiles of every partition store under the
// data directory, partition by partition.
func exportProfiles(ctx context.Context, cfg *config.Config, w io.Writer) (int, error) {
	prefix := stream.NewTopics(cfg.Kafka.TopicPrefix).Events + "-"
	entries, err := os.ReadDir(cfg.DataDir)
	if err != nil {
		return 0, fmt.Errorf("read data dir: %w", err)
	}
	type store struct {
		partition int
		dir       string
	}
	var stores []store
	for _, e := range entries {
		p, err := strconv.Atoi(strings.TrimPrefix(e.Name(), prefix))
		if e.IsDir() && strings.HasPrefix(e.Name(), prefix) && err == nil {
			stores = append(stores, store{p, filepath.Join(cfg.DataDir, e.Name())})
		}
	}
	if len(stores) == 0 {
		return 0, fmt.Errorf("no partition stores (%s*) in %s", prefix, cfg.DataDir)
	}
	sort.Slice(stores, func(i, j int) bool { return stores[i].partition < stores[j].partition })
	bw := bufio.NewWriterSize(w, 1<<16)
	enc := json.NewEncoder(bw)
	n := 0
	compiled, err := engine.Compile(cfg)
	if err != nil {
		return 0, err
	}
	opts := compiled.Store
	opts.GCInterval = 0
	now := time.Now()
	// RFM scores need the population of every partition before the first
	// profile is written: open them all, then write.
	opened := make([]*state.Store, 0, len(stores))
	closeAll := func() error {
		var errs []error
		for _, s := range opened {
			errs = append(errs, s.Close())
		}
		opened = nil
		return errors.Join(errs...)
	}
	defer closeAll()
	pop := state.NewPopulation()
	for _, st := range stores {
		s, err := state.Open(st.dir, opts)
		if err != nil {
			if strings.Contains(err.Error(), "Cannot acquire directory lock") {
				return n, errors.New("the partition stores are in use: stop the engine first, or read profiles from it with GET /v1/profiles/{key}")
			}
			return n, err
		}
		opened = append(opened, s)
		pop.Add(s.Population())
	}
	derived := state.Derived{Aggregates: opts.Aggregates, Interests: opts.Interests, Quintiles: pop.Quintiles()}
	derived.Quintiles.Horizon = opts.RFMHorizon
	for i, s := range opened {
		err := s.Each(ctx, func(p *state.Profile) error {
			n++
			return enc.Encode(p.View(derived, now))
		})
		if err != nil {
			return n, fmt.Errorf("export %s: %w", stores[i].dir, err)
		}
	}
	if err := closeAll(); err != nil {
		return n, err
	}
	return n, bw.Flush()
}
