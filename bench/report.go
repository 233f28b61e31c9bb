package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Machine describes where a benchmark ran.
type Machine struct {
	CPU         string `json:"cpu"`
	Cores       int    `json:"cores"`
	MemoryBytes uint64 `json:"memory_bytes"`
	OS          string `json:"os"`
	Go          string `json:"go"`
	// Tailor is the version control revision the binary was built from
	// ("+dirty" when the tree had changes), or "unknown".
	Tailor string `json:"tailor"`
}

// DescribeMachine reads this machine's CPU model and memory (from /proc on
// Linux) and the binary's versions.
func DescribeMachine() Machine {
	m := Machine{CPU: "unknown CPU", Cores: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version(), Tailor: "unknown"}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if name, ok := strings.CutPrefix(sc.Text(), "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				if kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64); err == nil {
					m.MemoryBytes = kb << 10
				}
				break
			}
		}
		f.Close()
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		var rev, dirty string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
		if rev != "" {
			m.Tailor = rev[:min(12, len(rev))] + dirty
		}
	}
	return m
}

func (m Machine) String() string {
	return fmt.Sprintf("%s, %d cores, %.1f GiB, %s, %s, tailor %s", m.CPU, m.Cores, float64(m.MemoryBytes)/(1<<30), m.OS, m.Go, m.Tailor)
}

// DecideResult is the outcome of a decide benchmark: the saturating rates
// of the engine and of the baseline, then the open-loop steps of each.
type DecideResult struct {
	Placements      []string     `json:"placements"`
	EngineSaturated float64      `json:"engine_saturated_per_s"`
	BaseSaturated   float64      `json:"baseline_saturated_per_s"`
	Ratio           float64      `json:"throughput_ratio"`
	Engine          []LoadResult `json:"engine_steps"`
	Baseline        []LoadResult `json:"baseline_steps"`
}

// Report is the record of a benchmark run: where and how it ran and what
// each benchmark found. Write turns it into Markdown with charts.
type Report struct {
	Command   string           `json:"command"`
	Started   time.Time        `json:"started"`
	Machine   Machine          `json:"machine"`
	Target    string           `json:"target"` // what was measured: "in-process engine" or addresses
	Ingest    *IngestResult    `json:"ingest,omitempty"`
	Decide    *DecideResult    `json:"decide,omitempty"`
	Freshness *FreshnessResult `json:"freshness,omitempty"`
}

// Write writes the report into dir (created if needed): report.md,
// report.json and a PNG chart per figure.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report directory: %w", err)
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	var md strings.Builder
	fmt.Fprintf(&md, "# tailor benchmark report\n\n")
	fmt.Fprintf(&md, "| | |\n| --- | --- |\n")
	fmt.Fprintf(&md, "| started | %s |\n", r.Started.UTC().Format(time.RFC3339))
	fmt.Fprintf(&md, "| command | `%s` |\n", r.Command)
	fmt.Fprintf(&md, "| target | %s |\n", r.Target)
	fmt.Fprintf(&md, "| CPU | %s |\n| cores | %d |\n| memory | %.1f GiB |\n", r.Machine.CPU, r.Machine.Cores, float64(r.Machine.MemoryBytes)/(1<<30))
	fmt.Fprintf(&md, "| OS | %s |\n| Go | %s |\n| tailor | %s |\n\n", r.Machine.OS, r.Machine.Go, r.Machine.Tailor)
	if in := r.Ingest; in != nil {
		fmt.Fprintf(&md, "## Ingest\n\n%d events (%.0f bytes each on average), %d partitions. The baseline is a consumer that only counts the records of the same topic, in the same run.\n\n", in.Events, in.EventBytes, in.Partitions)
		fmt.Fprintf(&md, "| | events/s |\n| --- | ---: |\n| produced | %.0f |\n| raw consumer (baseline) | %.0f |\n| engine applied | %.0f |\n| **applied / raw** | **%.2f** |\n\n", in.ProduceRate, in.RawRate, in.AppliedRate, in.Ratio)
		if in.ApplyCPU > 0 {
			fmt.Fprintf(&md, "CPU time of the process per event (every thread: with the embedded broker, its serving of the fetches too): raw consumer %.2f µs, engine %.2f µs.\n\n", in.RawCPU, in.ApplyCPU)
		}
		if err := ingestChart(filepath.Join(dir, "ingest.png"), in); err != nil {
			return err
		}
		md.WriteString("![events consumed and applied over time](ingest.png)\n\n")
	}
	if d := r.Decide; d != nil {
		fmt.Fprintf(&md, "## Decide\n\nPlacements per call: %s. Saturating rates (closed loop): engine %.0f/s, fixed-body fasthttp baseline %.0f/s, **ratio %.2f**. Then open-loop steps at shares of the engine's saturating rate, latencies measured from each request's scheduled send time (no coordinated omission), in microseconds:\n\n", strings.Join(d.Placements, ", "), d.EngineSaturated, d.BaseSaturated, d.Ratio)
		md.WriteString("| target | rate/s | ok/s | errors | p50 | p90 | p99 | p99.9 | max |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		for i := range d.Engine {
			for _, s := range []struct {
				who string
				r   []LoadResult
			}{{"engine", d.Engine}, {"baseline", d.Baseline}} {
				if i >= len(s.r) {
					continue
				}
				l := s.r[i]
				fmt.Fprintf(&md, "| %s | %.0f | %.0f | %d | %.0f | %.0f | %.0f | %.0f | %.0f |\n", s.who, l.Rate, l.Throughput, l.Errors, l.P50, l.P90, l.P99, l.P999, l.Max)
			}
		}
		md.WriteString("\n")
		if err := latencyChart(filepath.Join(dir, "decide-latency.png"), d); err != nil {
			return err
		}
		if err := throughputChart(filepath.Join(dir, "decide-throughput.png"), d); err != nil {
			return err
		}
		md.WriteString("![latency percentiles per step](decide-latency.png)\n\n![throughput over time](decide-throughput.png)\n\n")
	}
	if f := r.Freshness; f != nil {
		fmt.Fprintf(&md, "## Freshness\n\nTime from sending an identify call to the collect API until the profile API shows the segment change it causes, over %d samples, with %.0f workload events/s sent through the collect API meanwhile:\n\n", f.Samples, f.Background)
		fmt.Fprintf(&md, "| p50 | p90 | p99 | max | timeouts |\n| ---: | ---: | ---: | ---: | ---: |\n| %.1f ms | %.1f ms | %.1f ms | %.1f ms | %d |\n\n", f.P50, f.P90, f.P99, f.Max, f.Timeouts)
		if len(f.Latencies) > 0 {
			if err := freshnessChart(filepath.Join(dir, "freshness.png"), f); err != nil {
				return err
			}
			md.WriteString("![freshness distribution](freshness.png)\n\n")
		}
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(md.String()), 0o644)
}

// newPlot returns a plot with a title, axis labels and a grid.
func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text, p.Y.Label.Text = x, y
	p.Add(plotter.NewGrid())
	p.Legend.Top, p.Legend.Left = true, true
	p.Y.Tick.Marker = wholeTicks{}
	return p
}

// wholeTicks are gonum's default ticks labelled as whole numbers with
// thousands separated, which read better than 50000.00.
type wholeTicks struct{}

func (wholeTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = thousands(ticks[i].Value)
		}
	}
	return ticks
}

// logTicks mark 1, 2 and 5 times the powers of ten, for log scales.
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for p := math.Floor(math.Log10(math.Max(lo, 1e-9))); math.Pow(10, p) <= hi; p++ {
		for _, m := range []float64{1, 2, 5} {
			if v := m * math.Pow(10, p); v >= lo && v <= hi {
				ticks = append(ticks, plot.Tick{Value: v, Label: thousands(v)})
			}
		}
	}
	return ticks
}

func thousands(v float64) string {
	s := strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

func addLine(p *plot.Plot, name string, xys plotter.XYs, c color.Color, dashed bool) error {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return fmt.Errorf("chart line %s: %w", name, err)
	}
	l.Color = c
	l.Width = vg.Points(1.5)
	if dashed {
		l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
	}
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

func save(p *plot.Plot, path string) error {
	if err := p.Save(8*vg.Inch, 4.5*vg.Inch, path); err != nil {
		return fmt.Errorf("chart %s: %w", path, err)
	}
	return nil
}

func progressXYs(points []Point) plotter.XYs {
	xys := make(plotter.XYs, len(points))
	for i, pt := range points {
		xys[i].X, xys[i].Y = pt.Seconds, pt.Count
	}
	return xys
}

func ingestChart(path string, in *IngestResult) error {
	p := newPlot("Ingest: events read over time, same topic", "seconds", "events")
	if len(in.RawProgress) > 0 {
		if err := addLine(p, "raw consumer (baseline)", progressXYs(in.RawProgress), plotutil.Color(1), true); err != nil {
			return err
		}
	}
	if len(in.AppliedProgress) > 0 {
		if err := addLine(p, "engine applied", progressXYs(in.AppliedProgress), plotutil.Color(0), false); err != nil {
			return err
		}
	}
	p.Legend.Left = false // the lines rise on the left
	p.Legend.Top = false
	p.Legend.XOffs = -vg.Points(10)
	p.Legend.YOffs = vg.Points(10)
	return save(p, path)
}

var percentiles = []string{"p50", "p90", "p99", "p99.9", "max"}

func latencyChart(path string, d *DecideResult) error {
	p := newPlot("Decide: latency percentiles per step (from scheduled send time)", "percentile", "latency, µs (log scale)")
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = logTicks{}
	ticks := make([]plot.Tick, len(percentiles))
	for i, name := range percentiles {
		ticks[i] = plot.Tick{Value: float64(i), Label: name}
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	line := func(r LoadResult) plotter.XYs {
		ys := []float64{r.P50, r.P90, r.P99, r.P999, r.Max}
		xys := make(plotter.XYs, len(ys))
		for i, y := range ys {
			xys[i].X, xys[i].Y = float64(i), max(y, 1)
		}
		return xys
	}
	for i, r := range d.Engine {
		if err := addLine(p, fmt.Sprintf("engine at %.0f/s", r.Rate), line(r), plotutil.Color(i), false); err != nil {
			return err
		}
	}
	for i, r := range d.Baseline {
		if err := addLine(p, fmt.Sprintf("baseline at %.0f/s", r.Rate), line(r), plotutil.Color(i), true); err != nil {
			return err
		}
	}
	p.Y.Max *= 4 // room for the legend above the lines
	return save(p, path)
}

func throughputChart(path string, d *DecideResult) error {
	p := newPlot("Decide: successful calls per second over the open-loop steps", "seconds", "ok/s")
	series := func(steps []LoadResult) (ok, target plotter.XYs) {
		t := 0.0
		for _, s := range steps {
			for _, n := range s.Timeline {
				ok = append(ok, plotter.XY{X: t + 0.5, Y: n})
				target = append(target, plotter.XY{X: t, Y: s.Rate}, plotter.XY{X: t + 1, Y: s.Rate})
				t++
			}
		}
		return ok, target
	}
	eng, target := series(d.Engine)
	base, _ := series(d.Baseline)
	for _, s := range []struct {
		name   string
		xys    plotter.XYs
		c      int
		dashed bool
	}{{"target rate", target, 2, true}, {"engine", eng, 0, false}, {"baseline", base, 1, false}} {
		if len(s.xys) == 0 {
			continue
		}
		if err := addLine(p, s.name, s.xys, plotutil.Color(s.c), s.dashed); err != nil {
			return err
		}
	}
	p.Y.Min, p.Y.Max = 0, p.Y.Max*1.3 // room for the legend
	return save(p, path)
}

func freshnessChart(path string, f *FreshnessResult) error {
	p := newPlot("Freshness: event sent to change visible (cumulative share of samples)", "milliseconds", "share of samples")
	lat := slices.Sorted(slices.Values(f.Latencies))
	xys := make(plotter.XYs, len(lat))
	for i, v := range lat {
		xys[i].X, xys[i].Y = v, float64(i+1)/float64(len(lat))
	}
	if err := addLine(p, "samples", xys, plotutil.Color(0), false); err != nil {
		return err
	}
	p.Y.Tick.Marker = plot.DefaultTicks{}
	return save(p, path)
}
