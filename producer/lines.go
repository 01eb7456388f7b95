package producer

import (
	"bufio"
	"bytes"
	"io"
)

// lineReader splits a stream into lines without holding more than maxLine bytes: a
// longer line is consumed and reported by size only, so a hostile or broken file can
// neither exhaust memory nor stop the fetch.
type lineReader struct {
	br     *bufio.Reader
	max    int
	buf    []byte
	offset int64 // bytes consumed, counted from the file's start
	lineNo int64 // physical line number of the last line returned
}

func newLineReader(r io.Reader, maxLine int, offset, lineNo int64) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 1<<20), max: maxLine, offset: offset, lineNo: lineNo}
}

// next returns the next line without its line ending. When the line is longer than max,
// line is nil and size holds its length. The slice is valid until the next call.
func (lr *lineReader) next() (line []byte, size int64, err error) {
	lr.buf = lr.buf[:0]
	tooLong := false
	for {
		chunk, err := lr.br.ReadSlice('\n')
		size += int64(len(chunk))
		lr.offset += int64(len(chunk))
		if !tooLong {
			if len(lr.buf)+len(chunk) > lr.max+2 { // +2: the line ending
				tooLong, lr.buf = true, lr.buf[:0]
			} else if err == nil && len(lr.buf) == 0 {
				line = chunk // the common case: the whole line is in the buffer, no copy
			} else {
				lr.buf = append(lr.buf, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			if size == 0 {
				return nil, 0, io.EOF
			}
			err = nil
		}
		if err != nil {
			return nil, size, err
		}
		break
	}
	lr.lineNo++
	if tooLong {
		return nil, trimmedLen(size), nil
	}
	if line == nil {
		line = lr.buf
	}
	line = bytes.TrimRight(line, "\r\n")
	return line, int64(len(line)), nil
}

func trimmedLen(n int64) int64 { return max(n-1, 0) }
