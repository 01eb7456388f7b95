package ehrsim

import (
	"bufio"
	"os"
)

// jobWriter writes an export's output as a sequence of NDJSON files, one open at a
// time, and records each finished file's size and line count in its jobFile.
type jobWriter struct {
	files []jobFile
	cur   *os.File
	bw    *bufio.Writer
	lines int64 // lines in the current file
}

// next closes the current file and starts path, described by jf.
func (w *jobWriter) next(path string, jf jobFile) error {
	if err := w.close(); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	jf.path = f.Name()
	w.cur, w.bw, w.lines = f, bufio.NewWriterSize(f, 1<<16), 0
	w.files = append(w.files, jf)
	return nil
}

// open reports whether a file is being written.
func (w *jobWriter) open() bool { return w.cur != nil }

// writeLine appends one line to the current file. Write errors stick in the buffered
// writer and are returned by close.
func (w *jobWriter) writeLine(b []byte) {
	w.bw.Write(b)
	w.bw.WriteByte('\n')
	w.lines++
}

// close finishes the current file, if any.
func (w *jobWriter) close() error {
	if w.cur == nil {
		return nil
	}
	if err := w.bw.Flush(); err != nil {
		w.cur.Close()
		w.cur = nil
		return err
	}
	st, err := w.cur.Stat()
	if err != nil {
		w.cur.Close()
		w.cur = nil
		return err
	}
	w.files[len(w.files)-1].size, w.files[len(w.files)-1].lines = st.Size(), w.lines
	err = w.cur.Close()
	w.cur = nil
	return err
}
