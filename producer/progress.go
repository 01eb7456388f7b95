package producer

import (
	"context"
	"fmt"
	"time"
)

// progress shows files done, bytes, resources/s and an ETA: redrawn in place on a
// terminal, a log line every 10 seconds otherwise.
type progress struct {
	cfg   *Config
	files []*fileRun
	rn    *runner
	done  chan struct{}
	quit  context.CancelFunc
	began time.Time
}

func newProgress(cfg *Config, files []*fileRun, rn *runner) *progress {
	return &progress{cfg: cfg, files: files, rn: rn, done: make(chan struct{}), began: time.Now()}
}

func (p *progress) start(ctx context.Context) {
	ctx, p.quit = context.WithCancel(ctx)
	every := 10 * time.Second
	if p.cfg.ProgressTTY {
		every = 500 * time.Millisecond
	}
	go func() {
		defer close(p.done)
		t := time.NewTicker(every)
		defer t.Stop()
		var lastRes int64
		lastT := time.Now()
		for {
			select {
			case <-ctx.Done():
				if p.cfg.ProgressTTY && p.cfg.Progress != nil {
					fmt.Fprint(p.cfg.Progress, "\r\033[K")
				}
				return
			case now := <-t.C:
				res := p.rn.resources.Load()
				rate := float64(res-lastRes) / now.Sub(lastT).Seconds()
				lastRes, lastT = res, now
				p.report(rate)
			}
		}
	}()
}

func (p *progress) report(rate float64) {
	var doneFiles, expected int64
	for _, f := range p.files {
		if f.expected != nil && f.kind == kindOutput {
			expected += *f.expected
		}
		if f.finished.Load() {
			doneFiles++
		}
	}
	res := p.rn.resources.Load()
	eta := "?"
	if expected > 0 && rate > 0 && res < expected {
		eta = (time.Duration(float64(expected-res)/rate) * time.Second).Round(time.Second).String()
	}
	mb := float64(p.rn.bytes.Load()) / 1e6
	if p.cfg.Progress != nil && p.cfg.ProgressTTY {
		fmt.Fprintf(p.cfg.Progress, "\r\033[Kfetch: %d/%d files, %.1f MB, %d resources, %.0f/s, ETA %s", doneFiles, len(p.files), mb, res, rate, eta)
		return
	}
	p.cfg.Log.Info("fetch progress", "files_done", doneFiles, "files", len(p.files), "mb", fmt.Sprintf("%.1f", mb),
		"resources", res, "per_sec", int(rate), "eta", eta)
}

func (p *progress) stop() {
	if p.quit != nil {
		p.quit()
	}
	<-p.done
}
