package vocab

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Athena file names. Athena ships them upper case with a .csv suffix although they are
// tab-delimited; Load matches the names case-insensitively.
const (
	ConceptFile             = "CONCEPT.csv"
	ConceptRelationshipFile = "CONCEPT_RELATIONSHIP.csv"
	SourceToConceptMapFile  = "SOURCE_TO_CONCEPT_MAP.csv"
)

// LoadStats says what a load read.
type LoadStats struct {
	Concepts        int
	MapsTo          int // 'Maps to' relationships kept
	MapsToValue     int // 'Maps to value' relationships kept
	SourceToConcept int // SOURCE_TO_CONCEPT_MAP rows kept
	// Skipped counts rows left out: relationships naming a concept_id not in CONCEPT.csv,
	// invalidated relationships, duplicate concept ids or codes (the first row wins).
	DanglingRelationships int
	InvalidRelationships  int
	DuplicateIDs          int
	DuplicateCodes        int
	Duration              time.Duration
	MemoryBytes           int64 // Vocabulary.MemoryBytes after the load
}

// Load reads an Athena vocabulary release from dir: CONCEPT.csv (required),
// CONCEPT_RELATIONSHIP.csv and SOURCE_TO_CONCEPT_MAP.csv (each optional). Only 'Maps to'
// and 'Maps to value' relationships are kept, and of CONCEPT only what mapping needs
// (id, code, vocabulary, domain, standard flag); names are not kept.
func Load(dir string) (*Vocabulary, LoadStats, error) {
	start := time.Now()
	names, err := athenaFiles(dir)
	if err != nil {
		return nil, LoadStats{}, err
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	// open opens the named table, or gives nil when the directory has none.
	open := func(name string) (io.Reader, error) {
		p, ok := names[strings.ToUpper(name)]
		if !ok {
			return nil, nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("vocabulary %s: %w", name, err)
		}
		files = append(files, f)
		return f, nil
	}
	cf, err := open(ConceptFile)
	if err != nil {
		return nil, LoadStats{}, err
	}
	if cf == nil {
		return nil, LoadStats{}, fmt.Errorf("vocabulary directory %s: no %s", dir, ConceptFile)
	}
	rels, err := open(ConceptRelationshipFile)
	if err != nil {
		return nil, LoadStats{}, err
	}
	stcm, err := open(SourceToConceptMapFile)
	if err != nil {
		return nil, LoadStats{}, err
	}
	v, st, err := LoadFrom(cf, rels, stcm)
	st.Duration = time.Since(start)
	return v, st, err
}

func athenaFiles(dir string) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("vocabulary directory: %w", err)
	}
	m := make(map[string]string, len(entries))
	for _, e := range entries {
		if !e.IsDir() {
			m[strings.ToUpper(e.Name())] = filepath.Join(dir, e.Name())
		}
	}
	return m, nil
}

// LoadFrom reads the three Athena tables from readers; relationships and stcm may be nil.
func LoadFrom(concepts, relationships, stcm io.Reader) (*Vocabulary, LoadStats, error) {
	start := time.Now()
	v := newVocabulary()
	var st LoadStats
	if err := v.readConcepts(concepts, &st); err != nil {
		return nil, st, fmt.Errorf("%s: %w", ConceptFile, err)
	}
	st.DuplicateIDs, st.DuplicateCodes = v.buildIndexes()
	if relationships != nil {
		if err := v.readRelationships(relationships, &st); err != nil {
			return nil, st, fmt.Errorf("%s: %w", ConceptRelationshipFile, err)
		}
	}
	if stcm != nil {
		if err := v.readSourceToConcept(stcm, &st); err != nil {
			return nil, st, fmt.Errorf("%s: %w", SourceToConceptMapFile, err)
		}
	}
	st.Concepts = len(v.id)
	st.MemoryBytes = v.MemoryBytes()
	st.Duration = time.Since(start)
	return v, st, nil
}

func (v *Vocabulary) readConcepts(r io.Reader, _ *LoadStats) error {
	return readRows(r, []string{"concept_id", "domain_id", "vocabulary_id", "standard_concept", "concept_code"},
		func(line int, f [][]byte, cols []int, _ bool) error {
			cID, cDom, cVoc, cStd, cCode := cols[0], cols[1], cols[2], cols[3], cols[4]
			id, ok := parseInt32(f[cID])
			if !ok {
				return fmt.Errorf("line %d: concept_id is not a 32-bit integer", line)
			}
			code := f[cCode]
			if len(code) > 1<<16-1 {
				return fmt.Errorf("line %d: concept_code longer than 65535 bytes", line)
			}
			vi, ok1 := intern(v.vocabIx, &v.vocabs, f[cVoc])
			di, ok2 := intern(v.domIx, &v.domains, f[cDom])
			if !ok1 || !ok2 {
				return fmt.Errorf("line %d: more than 65535 distinct vocabularies or domains", line)
			}
			if len(v.arena)+len(code) > 1<<32-1 {
				return fmt.Errorf("line %d: concept codes exceed 4 GiB", line)
			}
			v.id = append(v.id, id)
			v.vocab = append(v.vocab, vi)
			v.domain = append(v.domain, di)
			v.std = append(v.std, len(f[cStd]) == 1 && f[cStd][0] == 'S')
			v.codeOff = append(v.codeOff, uint32(len(v.arena)))
			v.codeLen = append(v.codeLen, uint16(len(code)))
			v.arena = append(v.arena, code...)
			if len(v.id) == 1<<31 {
				return fmt.Errorf("line %d: more than 2^31 concepts", line)
			}
			return nil
		})
}

var (
	relMapsTo      = []byte("Maps to")
	relMapsToValue = []byte("Maps to value")
)

func (v *Vocabulary) readRelationships(r io.Reader, st *LoadStats) error {
	return readRows(r, []string{"concept_id_1", "concept_id_2", "relationship_id"},
		func(line int, f [][]byte, cols []int, invalidated bool) error {
			// Most of a release's relationships are neither kind: decide on the bytes first.
			var (
				dst   []uint32
				count *int
			)
			switch rel := f[cols[2]]; {
			case bytes.Equal(rel, relMapsTo):
				dst, count = v.mapsTo, &st.MapsTo
			case bytes.Equal(rel, relMapsToValue):
				dst, count = v.mapsToValue, &st.MapsToValue
			default:
				return nil
			}
			if invalidated {
				st.InvalidRelationships++
				return nil
			}
			id1, ok1 := parseInt32(f[cols[0]])
			id2, ok2 := parseInt32(f[cols[1]])
			if !ok1 || !ok2 {
				return fmt.Errorf("line %d: concept ids are not 32-bit integers", line)
			}
			i, j := v.findID(id1), v.findID(id2)
			if i == none || j == none {
				st.DanglingRelationships++
				return nil
			}
			// One source may map to several targets; keep one, preferring a standard target
			// (a release lists a few to non-standard concepts that are being retired).
			if cur := dst[i]; cur == none || (!v.std[cur] && v.std[j]) {
				if cur == none {
					*count++
				}
				dst[i] = j
			}
			return nil
		})
}

func (v *Vocabulary) readSourceToConcept(r io.Reader, st *LoadStats) error {
	return readRows(r, []string{"source_code", "source_concept_id", "source_vocabulary_id", "target_concept_id"},
		func(line int, f [][]byte, cols []int, invalidated bool) error {
			if invalidated {
				return nil
			}
			src, ok1 := parseInt32(f[cols[1]])
			tgt, ok2 := parseInt32(f[cols[3]])
			if !ok1 || !ok2 {
				return fmt.Errorf("line %d: concept ids are not 32-bit integers", line)
			}
			key := string(f[cols[2]]) + "\x00" + string(f[cols[0]])
			if _, dup := v.stcm[key]; !dup {
				v.stcm[key] = stcmRow{source: src, target: tgt}
				st.SourceToConcept++
			}
			return nil
		})
}

// readRows reads one Athena table: the header, which must name the wanted columns, then
// every non-empty line, which must have them all. row gets the 1-based line number, the
// fields, the positions of the wanted columns (in want's order) and whether the row's
// invalid_reason (when the table has one) is set. The fields alias the reader's buffer
// and are valid only during the call.
func readRows(r io.Reader, want []string, row func(line int, f [][]byte, cols []int, invalidated bool) error) error {
	t := newTSV(r)
	cols, err := t.header(want...)
	if err != nil {
		return err
	}
	cInv := t.column("invalid_reason")
	need := maxIndex(cols)
	for {
		ok, err := t.next()
		if err != nil || !ok {
			return err
		}
		f := t.fields
		if len(f) <= need {
			return fmt.Errorf("line %d: %d fields, want at least %d", t.line, len(f), need+1)
		}
		invalidated := cInv >= 0 && cInv < len(f) && len(f[cInv]) > 0
		if err := row(t.line, f, cols, invalidated); err != nil {
			return err
		}
	}
}

// tsv reads tab-separated lines without allocating per field: fields alias the reader's
// buffer and are valid until the next call to next.
type tsv struct {
	r      *bufio.Reader
	line   int
	fields [][]byte
	long   []byte // holds lines longer than the reader's buffer
	names  map[string]int
}

func newTSV(r io.Reader) *tsv {
	return &tsv{r: bufio.NewReaderSize(r, 1<<20), fields: make([][]byte, 0, 16)}
}

// header reads the first line and returns the positions of the wanted columns.
func (t *tsv) header(want ...string) ([]int, error) {
	ok, err := t.next()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("empty file (no header line)")
	}
	t.names = make(map[string]int, len(t.fields))
	for i, f := range t.fields {
		t.names[strings.ToLower(strings.TrimSpace(string(f)))] = i
	}
	cols := make([]int, len(want))
	for i, w := range want {
		c, ok := t.names[w]
		if !ok {
			return nil, fmt.Errorf("header has no %s column (is the file tab-delimited?)", w)
		}
		cols[i] = c
	}
	return cols, nil
}

// column returns the position of an optional column, or -1.
func (t *tsv) column(name string) int {
	if c, ok := t.names[name]; ok {
		return c
	}
	return -1
}

// next reads the next non-empty line into t.fields; ok is false at the end of input.
func (t *tsv) next() (ok bool, err error) {
	for {
		line, err := t.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			t.long = append(t.long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = t.r.ReadSlice('\n')
				t.long = append(t.long, line...)
			}
			line = t.long
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return false, fmt.Errorf("line %d: %w", t.line+1, err)
		}
		if len(line) == 0 && err != nil {
			return false, nil
		}
		t.line++
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			if err != nil {
				return false, nil
			}
			continue
		}
		t.split(line)
		return true, nil
	}
}

func (t *tsv) split(line []byte) {
	t.fields = t.fields[:0]
	for {
		i := bytes.IndexByte(line, '\t')
		if i < 0 {
			t.fields = append(t.fields, unquote(line))
			return
		}
		t.fields = append(t.fields, unquote(line[:i]))
		line = line[i+1:]
	}
}

// unquote strips one pair of surrounding double quotes: Athena writes no quotes, but files
// re-saved by spreadsheet tools often quote every field.
func unquote(f []byte) []byte {
	if len(f) >= 2 && f[0] == '"' && f[len(f)-1] == '"' {
		return f[1 : len(f)-1]
	}
	return f
}

func parseInt32(b []byte) (int32, bool) {
	if len(b) == 0 || len(b) > 11 {
		return 0, false
	}
	neg := false
	if b[0] == '-' {
		neg, b = true, b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	if n < -1<<31 || n > 1<<31-1 {
		return 0, false
	}
	return int32(n), true
}

func maxIndex(cols []int) int {
	m := 0
	for _, c := range cols {
		m = max(m, c)
	}
	return m
}
