package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/serve"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

// Erase puts a request to erase key on the events topic (decision 0031)
// and returns the erasure's id, once Kafka has it: serve.Erasures.
func (e *Engine) Erase(ctx context.Context, key, by string) (string, error) {
	now := time.Now
	e.reloadMu.Lock()
	cfg := e.cfg
	e.reloadMu.Unlock()
	if cfg.Clock != nil {
		now = cfg.Clock
	}
	rec, err := stream.ErasureRecordOf(e.topics.Events, key, stream.ErasureRecord{
		RequestedAt: now().UnixMilli(), By: by, Suppress: cfg.Privacy.SuppressErased,
	})
	if err != nil {
		return "", err
	}
	if err := e.producer.Produce(ctx, rec); err != nil {
		return "", fmt.Errorf("erase: %w", err)
	}
	return stream.ErasureID(rec.Partition, rec.Offset), nil
}

// Erasure returns how far erasure id went in partition (< 0: the
// partition the id names): serve.Erasures.
func (e *Engine) Erasure(id string, partition int32) (state.Erasure, bool, error) {
	if partition < 0 {
		named, _, err := stream.ParseErasureID(id)
		if err != nil {
			return state.Erasure{}, false, err
		}
		partition = named
	}
	reads := e.processor.Reads()
	out, applied, err := reads.Erasure(id, partition)
	if errors.Is(err, stream.ErrNotOwned) {
		addr, _ := reads.PartitionOwner(partition)
		return state.Erasure{}, false, &serve.ElsewhereError{Partition: partition, Addr: addr}
	}
	return out, applied, err
}

// suppressed is serve.Config.Suppressed: nil unless erased ids are
// suppressed.
func suppressed(cfg *config.Config, reads stream.Reads) func(string) bool {
	if !cfg.Privacy.SuppressErased {
		return nil
	}
	return reads.Suppressed
}
