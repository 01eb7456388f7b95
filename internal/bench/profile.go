package bench

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/pprof/profile"

	"github.com/fhirstream/fhirstream/internal/pipeline"
)

// attributeProfile splits the CPU profile by the stage label: CPU seconds per label, per
// stage the top functions by flat time, and one profile file per stage beside it.
func attributeProfile(rep *Report) error {
	f, err := os.Open(rep.Profile)
	if err != nil {
		return err
	}
	prof, err := profile.Parse(f)
	f.Close()
	if err != nil {
		return err
	}
	valueIndex := -1
	for i, st := range prof.SampleType {
		if st.Type == "cpu" && st.Unit == "nanoseconds" {
			valueIndex = i
		}
	}
	if valueIndex < 0 {
		return errors.New("no cpu nanoseconds samples")
	}
	byLabel := map[string]float64{}
	flat := map[string]map[string]float64{}
	for _, s := range prof.Sample {
		label := "(unlabelled: GC workers, runtime)"
		if v := s.Label[pipeline.ProfileLabel]; len(v) > 0 {
			label = v[0]
		}
		secs := float64(s.Value[valueIndex]) / 1e9
		byLabel[label] += secs
		if len(s.Location) > 0 && len(s.Location[0].Line) > 0 && s.Location[0].Line[0].Function != nil {
			if flat[label] == nil {
				flat[label] = map[string]float64{}
			}
			flat[label][s.Location[0].Line[0].Function.Name] += secs
		}
	}
	rep.CPU.ByLabel = byLabel
	for i := range rep.Stages {
		st := &rep.Stages[i]
		st.CPUSeconds = byLabel[st.Name]
		st.RecordsPerCPUSec = perSecond(st.RecordsIn, st.CPUSeconds)
		for fn, secs := range flat[st.Name] {
			st.TopFunctions = append(st.TopFunctions, FnCPU{Function: fn, Seconds: secs, Share: secs / st.CPUSeconds})
		}
		sort.Slice(st.TopFunctions, func(a, b int) bool { return st.TopFunctions[a].Seconds > st.TopFunctions[b].Seconds })
		st.TopFunctions = st.TopFunctions[:min(len(st.TopFunctions), 10)]
	}
	// One file per label, for tools that cannot focus on a tag.
	dir := filepath.Dir(rep.Profile)
	for label := range byLabel {
		if strings.HasPrefix(label, "(") {
			continue
		}
		one := prof.Copy()
		one.FilterSamplesByTag(func(s *profile.Sample) bool { return s.HasLabel(pipeline.ProfileLabel, label) }, nil)
		out, err := os.Create(filepath.Join(dir, "cpu-"+label+".pprof"))
		if err != nil {
			return err
		}
		werr := one.Write(out)
		if err := errors.Join(werr, out.Close()); err != nil {
			return err
		}
	}
	return nil
}
