package bench

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// WriteText writes the report as `fhirstream bench` prints it: the run and the machine,
// the end-to-end rate, a table of the stages, the busiest lake commits, CPU and memory,
// the per-stage profile when there is one, and whether the counts add up.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "fhirstream bench (%s): %d patients, %d resources (%.1f MB NDJSON), broker %s, %d partitions, topic prefix %s\n",
		r.Mode, r.Patients, r.Resources, float64(r.NDJSONBytes)/1e6, r.Broker, r.Partitions, r.TopicPrefix)
	fmt.Fprintf(w, "machine: %d CPUs (%s), %.1f GiB RAM, load %.2f %.2f %.2f before, %.2f %.2f %.2f after\n\n",
		r.Host.CPUs, r.Host.CPUModel, float64(r.Host.MemBytes)/(1<<30),
		r.Host.LoadBefore[0], r.Host.LoadBefore[1], r.Host.LoadBefore[2], r.Host.LoadAfter[0], r.Host.LoadAfter[1], r.Host.LoadAfter[2])
	fmt.Fprintf(w, "end to end (kickoff → last stage drained): %.2f s, %.0f resources/s, %.1f MB/s\n\n",
		r.EndToEndSeconds, r.ResourcesPerSecond, r.MBPerSecond)
	processes := r.Mode == ModeProcesses
	if err := r.writeStages(w, processes); err != nil {
		return err
	}
	if err := r.writeCommits(w); err != nil {
		return err
	}
	r.writeCPUAndMemory(w, processes)
	r.writeProfile(w)
	if r.Consistent {
		fmt.Fprintln(w, "\ncounts consistent: every generated resource was fetched, and each stage read what its upstream wrote")
	} else {
		fmt.Fprintf(w, "\nCOUNTS INCONSISTENT:\n  %s\n", strings.Join(r.Mismatches, "\n  "))
	}
	if r.Kept != "" {
		fmt.Fprintf(w, "kept: %s\n", r.Kept)
	}
	return nil
}

// writeStages writes the table of stages, with each one's process in processes mode.
func (r *Report) writeStages(w io.Writer, processes bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	head := "STAGE\tIN\tOUT\tDEAD\tTXNS\tSTART s\tEND s\tACTIVE s\tREC/s\tMB IN\tMB/s\tCPU s\tREC/CPU-s\t"
	if processes {
		head += "µs/RES\tPEAK RSS MB\tGO HEAP MB\t"
	}
	fmt.Fprintln(tw, head)
	for _, s := range r.Stages {
		mbIn, mbs := "-", "-"
		if s.BytesIn >= 0 {
			mbIn, mbs = fmt.Sprintf("%.1f", float64(s.BytesIn)/1e6), fmt.Sprintf("%.1f", s.MBPerSecond)
		}
		cpu, perCPU := "-", "-"
		if r.Profile != "" || s.Process != nil {
			cpu, perCPU = fmt.Sprintf("%.2f", s.CPUSeconds), fmt.Sprintf("%.0f", s.RecordsPerCPUSec)
		}
		txns := "-"
		if s.Batches >= 0 {
			txns = fmt.Sprint(s.Batches)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%.2f\t%.2f\t%.2f\t%.0f\t%s\t%s\t%s\t%s\t", s.Name, s.RecordsIn, s.RecordsOut, s.DeadLetters, txns,
			s.StartSeconds, s.EndSeconds, s.ActiveSeconds, s.RecordsPerSecond, mbIn, mbs, cpu, perCPU)
		if processes {
			perRes, rss, heap := "-", "-", "-"
			if p := s.Process; p != nil {
				perRes, rss = fmt.Sprintf("%.1f", p.CPUMicrosPerResource), fmt.Sprintf("%.0f", float64(p.PeakRSSBytes)/1e6)
				heap = fmt.Sprintf("%.0f", float64(p.GoHeapPeakBytes)/1e6)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t", perRes, rss, heap)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// writeCommits writes the lake commits in all and the busiest tables'.
func (r *Report) writeCommits(w io.Writer) error {
	if len(r.Commits) > 0 {
		var n int64
		var secs float64
		for _, c := range r.Commits {
			n, secs = n+c.Commits, secs+c.Seconds
		}
		fmt.Fprintf(w, "\nlake commits: %d table commits, %.1f s in all (files, catalog, retries; tables commit in parallel); busiest tables:\n", n, secs)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "  SINK\tTABLE\tCOMMITS\tMEAN ms\tTOTAL s\t")
		for _, c := range r.Commits[:min(8, len(r.Commits))] {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%.0f\t%.2f\t\n", c.Stage, c.Table, c.Commits, 1000*c.MeanSeconds, c.Seconds)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// writeCPUAndMemory writes the CPU the run used, by whom and per resource, and its
// memory peaks.
func (r *Report) writeCPUAndMemory(w io.Writer, processes bool) {
	c := r.CPU
	fmt.Fprintf(w, "\nCPU during the run (%.1f s × %d cores = %.1f core-s): fhirstream %.1f s", c.WallSeconds, c.Cores,
		c.WallSeconds*float64(c.Cores), c.ProcessSeconds)
	if !processes {
		fmt.Fprintf(w, " (GC %.1f s)", c.GCSeconds)
	}
	if c.BrokerSeconds > 0 {
		fmt.Fprintf(w, ", broker %.1f s", c.BrokerSeconds)
	}
	if processes {
		fmt.Fprintf(w, ", bench and EHR simulator %.1f s", c.HarnessSeconds)
	}
	fmt.Fprintf(w, ", everything else %.1f s\n", c.OtherSeconds)
	us, broker := r.MicrosPerResource()
	fmt.Fprintf(w, "CPU per resource: fhirstream %.1f µs", us)
	if c.BrokerSeconds > 0 {
		fmt.Fprintf(w, ", broker %.1f µs, together %.1f µs", broker, us+broker)
	}
	fmt.Fprintln(w)
	if processes {
		fmt.Fprintf(w, "memory: bench process (EHR simulator, sampling) max RSS %.0f MB; each stage's peak RSS is in the table\n",
			float64(r.Memory.MaxRSSBytes)/1e6)
	} else {
		fmt.Fprintf(w, "memory: max RSS %.0f MB, Go heap peak %.0f MB, Go runtime total peak %.0f MB\n",
			float64(r.Memory.MaxRSSBytes)/1e6, float64(r.Memory.GoHeapPeakBytes)/1e6, float64(r.Memory.GoTotalPeakBytes)/1e6)
	}
}

// writeProfile writes, for a profiled run, the CPU seconds per label and each stage's
// top functions.
func (r *Report) writeProfile(w io.Writer) {
	if r.Profile == "" {
		return
	}
	c := r.CPU
	fmt.Fprintf(w, "\nCPU profile %s (per stage: go tool pprof -tagfocus stage=<name> %s)\n", r.Profile, r.Profile)
	labels := make([]string, 0, len(c.ByLabel))
	for l := range c.ByLabel {
		labels = append(labels, l)
	}
	sort.Slice(labels, func(a, b int) bool { return c.ByLabel[labels[a]] > c.ByLabel[labels[b]] })
	for _, l := range labels {
		fmt.Fprintf(w, "  %-36s %7.2f s\n", l, c.ByLabel[l])
	}
	for _, s := range r.Stages {
		if len(s.TopFunctions) == 0 {
			continue
		}
		fmt.Fprintf(w, "top functions of %s (flat):\n", s.Name)
		for _, fn := range s.TopFunctions[:min(5, len(s.TopFunctions))] {
			fmt.Fprintf(w, "  %5.1f%%  %6.2f s  %s\n", 100*fn.Share, fn.Seconds, fn.Function)
		}
	}
}
