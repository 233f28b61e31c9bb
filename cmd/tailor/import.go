package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tailorcdp/tailor/bench/dataset"
	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/engine"
	"github.com/tailorcdp/tailor/stream"
)

func importCommand() *command {
	return &command{
		name:    "import",
		args:    "FILE",
		summary: "produce NDJSON Segment events (FILE, FILE.gz, or - for stdin) to the events topic",
		run: func(ctx context.Context, cfg *config.Config, fs *flag.FlagSet, _, stderr io.Writer) error {
			if fs.NArg() != 1 {
				return errors.New("want one FILE argument (- for standard input)")
			}
			path := fs.Arg(0)
			var (
				in   io.Reader
				size int64
				read atomic.Int64
			)
			if path == "-" {
				in = os.Stdin
			} else {
				info, err := os.Stat(path)
				if err != nil {
					return err
				}
				size = info.Size()
				rc, err := dataset.OpenMaybeGzip(path, &read)
				if err != nil {
					return err
				}
				defer rc.Close()
				in = rc
			}
			producer, topic, err := connectProducer(ctx, cfg)
			if err != nil {
				return err
			}
			defer producer.Close()
			start := time.Now()
			bar := newProgress(stderr)
			stats, err := stream.Import(ctx, in, stream.ImportOptions{
				Producer: producer,
				Topic:    topic,
				Limits:   engine.Limits(cfg),
				Progress: func(s stream.ImportStats) {
					bar.update(s.Lines, s.Rejected, size, read.Load(), time.Since(start))
				},
			})
			bar.done()
			fmt.Fprintf(stderr, "import %s to %s in %s: %s\n", path, topic, time.Since(start).Round(time.Millisecond), stats)
			if err != nil {
				return err
			}
			if stats.Rejected > 0 {
				return fmt.Errorf("%d of %d lines rejected", stats.Rejected, stats.Lines)
			}
			return nil
		},
	}
}

// connectProducer connects to the configured brokers, or to the embedded
// broker of a running engine when none are configured.
func connectProducer(ctx context.Context, cfg *config.Config) (*stream.Producer, string, error) {
	client, err := engine.ClientConfig(cfg)
	if err != nil {
		return nil, "", err
	}
	if len(client.Brokers) == 0 {
		client.Brokers = []string{"127.0.0.1:" + strconv.Itoa(cfg.Embedded.Port)}
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := engine.Ping(pctx, client); err != nil {
		return nil, "", err
	}
	p, err := stream.NewProducer(client)
	if err != nil {
		return nil, "", err
	}
	// The engine creates the topics at start; importing before the first
	// start is fine too.
	topics := stream.NewTopics(cfg.Kafka.TopicPrefix)
	if _, err := stream.EnsureTopics(ctx, p.Client(), topics, int32(cfg.Kafka.Partitions), int16(cfg.Kafka.Replication),
		stream.EventsRetention(time.Duration(cfg.Kafka.EventsRetention))); err != nil {
		p.Close()
		return nil, "", err
	}
	return p, topics.Events, nil
}

// progress draws a progress line on a terminal, or prints a line every few
// seconds elsewhere (logs, CI).
type progress struct {
	w        io.Writer
	terminal bool
	last     time.Time
	drawn    bool
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if info, err := f.Stat(); err == nil && info.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

func (p *progress) update(lines, rejected int, size, read int64, elapsed time.Duration) {
	if !p.terminal && time.Since(p.last) < 5*time.Second {
		return
	}
	p.last = time.Now()
	rate := float64(lines) / max(elapsed.Seconds(), 0.001)
	line := fmt.Sprintf("%d lines, %d rejected, %.0f lines/s", lines, rejected, rate)
	if size > 0 {
		frac := min(1, float64(read)/float64(size))
		const width = 30
		n := int(frac * width)
		line = fmt.Sprintf("[%s%s] %3.0f%%  %s", strings.Repeat("#", n), strings.Repeat(".", width-n), frac*100, line)
	}
	if p.terminal {
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
		p.drawn = true
	} else {
		fmt.Fprintln(p.w, line)
	}
}

func (p *progress) done() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}
