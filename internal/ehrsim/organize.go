package ehrsim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/valyala/fastjson"
)

// lineRef locates one source line: file index in s.src.files, byte offset and length.
type lineRef struct {
	file int
	off  int64
	n    int
}

// organizeByPatient writes the output of an organizeOutputBy=Patient export (Bulk Data
// IG v3): resource blocks, each a header Parameters resource referencing a Patient,
// then that Patient, then the resources whose subject, patient or beneficiary is that
// Patient. Resources without a patient are left out, as the IG allows. Files hold at
// most ResourcesPerFile resources besides headers; a block that does not fit continues
// in the next file, which starts with the block's header again, and the file it left
// records the continuation (continuesInFile in the manifest).
//
// The source is read twice: once to index each patient's lines (offsets only, not
// content), once to copy them out in block order.
func (s *Server) organizeByPatient(dir string, req request) ([]jobFile, error) {
	patientLine := map[string]lineRef{}
	others := map[string][]lineRef{}
	var p fastjson.Parser
	for fi, sf := range s.src.files {
		if nonPatientTypes[sf.typ] || (len(req.types) > 0 && !slices.Contains(req.types, sf.typ)) {
			continue
		}
		if err := scanLines(sf.path, func(off int64, line []byte) {
			v, err := p.ParseBytes(line)
			if err != nil || !keep(v, sf.typ, req) {
				return
			}
			ref := lineRef{file: fi, off: off, n: len(line)}
			if sf.typ == "Patient" {
				patientLine[string(v.GetStringBytes("id"))] = ref
				return
			}
			if pid := patientOf(v); pid != "" {
				others[pid] = append(others[pid], ref)
			}
		}); err != nil {
			return nil, err
		}
	}
	ids := make([]string, 0, len(others)+len(patientLine))
	for id := range patientLine {
		ids = append(ids, id)
	}
	for id := range others {
		if _, ok := patientLine[id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)

	srcs := make([]*os.File, len(s.src.files))
	defer func() {
		for _, f := range srcs {
			if f != nil {
				f.Close()
			}
		}
	}()
	read := func(r lineRef, buf []byte) ([]byte, error) {
		if srcs[r.file] == nil {
			f, err := os.Open(s.src.files[r.file].path)
			if err != nil {
				return nil, err
			}
			srcs[r.file] = f
		}
		buf = slices.Grow(buf[:0], r.n)[:r.n]
		_, err := srcs[r.file].ReadAt(buf, r.off)
		return buf, err
	}

	var (
		w         jobWriter
		resources int // resources in the current file, headers excluded
		limit     = s.cfg.ResourcesPerFile
		buf       []byte
		arena     fastjson.Arena
	)
	defer w.close()
	newFile := func() error {
		resources = 0
		name := fmt.Sprintf("organized.%04d.ndjson", len(w.files))
		return w.next(filepath.Join(dir, name), jobFile{kind: "output"})
	}
	for _, id := range ids {
		block := others[id]
		if r, ok := patientLine[id]; ok {
			block = append([]lineRef{r}, block...)
		}
		header := fmt.Sprintf(`{"resourceType":"Parameters","parameter":[{"name":"header","valueReference":{"reference":"Patient/%s"}}]}`, id)
		if !w.open() || (limit > 0 && resources >= limit) {
			if err := newFile(); err != nil {
				return nil, err
			}
		}
		w.writeLine([]byte(header))
		for _, r := range block {
			if limit > 0 && resources >= limit {
				// The block goes on in the next file, which starts with its header again.
				w.files[len(w.files)-1].continues = len(w.files)
				if err := newFile(); err != nil {
					return nil, err
				}
				w.writeLine([]byte(header))
			}
			var err error
			if buf, err = read(r, buf); err != nil {
				return nil, fmt.Errorf("read %s: %w", s.src.files[r.file].path, err)
			}
			line := buf
			if len(req.elements) > 0 {
				if v, err := p.ParseBytes(line); err == nil {
					arena.Reset()
					if subset(v, &arena, s.src.files[r.file].typ, req.elements) {
						line = v.MarshalTo(nil)
					}
				}
			}
			w.writeLine(line)
			resources++
		}
	}
	if err := w.close(); err != nil {
		return nil, err
	}
	return w.files, nil
}

// patientOf is the id of the Patient a resource belongs to, by its subject, patient or
// beneficiary reference; "" when it has none.
func patientOf(v *fastjson.Value) string {
	for _, f := range []string{"subject", "patient", "beneficiary"} {
		if ref := v.GetStringBytes(f, "reference"); ref != nil {
			if id, ok := strings.CutPrefix(string(ref), "Patient/"); ok {
				return id
			}
		}
	}
	return ""
}

// scanLines calls fn with the byte offset and content of each non-empty line of path.
func scanLines(path string, fn func(off int64, line []byte)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var off int64
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A line longer than the buffer: gather it.
			long := append([]byte(nil), line...)
			for err == bufio.ErrBufferFull {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		n := len(line)
		if trimmed := bytes.TrimRight(line, "\r\n"); len(bytes.TrimSpace(trimmed)) > 0 {
			fn(off, trimmed)
		}
		off += int64(n)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
	}
}
