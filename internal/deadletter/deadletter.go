// Package deadletter builds and reads the context headers of records on the dead-letter
// topic (schemas.DLQ*), so the fetcher, the stage runtime and the dlq tool spell them the
// same way. A dead letter keeps the original key, value, headers and timestamp; its
// context headers are appended after the original ones and stripped again by replay.
package deadletter

import (
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/schemas"
)

// Header is a record header of either kind the project handles, kgo.RecordHeader or
// stage.Header: the same shape, so Parse and Strip serve the Kafka side and the stage side.
type Header interface {
	~struct {
		Key   string
		Value []byte
	}
}

// kv is the shape both header types share.
type kv = struct {
	Key   string
	Value []byte
}

// maxMessageLen bounds the message header: enough for a clear reason, never a payload.
const maxMessageLen = 1024

// Context says why and where a record was dead-lettered.
type Context struct {
	Stage       string // "fetch", "validate", "dedupe", "omop", ...
	SourceTopic string // the topic it was read from, or for the fetcher the topic it was meant for
	Partition   int32  // -1 when it never was in a topic
	Offset      int64  // -1 when it never was in a topic
	Class       string // short machine-readable reason
	Message     string // human-readable reason; must not contain PHI
	Path        string // element path, when known
	Attempts    int
	Time        time.Time
}

// Headers returns the context headers, to be appended after the record's own headers.
func (c Context) Headers() []kgo.RecordHeader { return HeadersOf[kgo.RecordHeader](c) }

// HeadersOf returns c's context headers as headers of type H.
func HeadersOf[H Header](c Context) []H {
	msg := c.Message
	if len(msg) > maxMessageLen {
		msg = msg[:maxMessageLen] + "…"
	}
	t := c.Time
	if t.IsZero() {
		t = time.Now()
	}
	attempts := c.Attempts
	if attempts <= 0 {
		attempts = 1
	}
	h := []H{
		H(kv{Key: schemas.DLQStage, Value: []byte(c.Stage)}),
		H(kv{Key: schemas.DLQSourceTopic, Value: []byte(c.SourceTopic)}),
		H(kv{Key: schemas.DLQSourcePartition, Value: []byte(strconv.FormatInt(int64(c.Partition), 10))}),
		H(kv{Key: schemas.DLQSourceOffset, Value: []byte(strconv.FormatInt(c.Offset, 10))}),
		H(kv{Key: schemas.DLQErrorClass, Value: []byte(c.Class)}),
		H(kv{Key: schemas.DLQErrorMessage, Value: []byte(msg)}),
		H(kv{Key: schemas.DLQAttempts, Value: []byte(strconv.Itoa(attempts))}),
		H(kv{Key: schemas.DLQTime, Value: []byte(t.UTC().Format(time.RFC3339Nano))}),
	}
	if c.Path != "" {
		h = append(h, H(kv{Key: schemas.DLQErrorPath, Value: []byte(c.Path)}))
	}
	return h
}

// Record returns the dead letter of orig: same key, value, headers and timestamp, plus
// the context headers, addressed to dlqTopic.
func Record(dlqTopic string, orig *kgo.Record, c Context) *kgo.Record {
	headers := make([]kgo.RecordHeader, 0, len(orig.Headers)+9)
	headers = append(headers, orig.Headers...)
	headers = append(headers, c.Headers()...)
	return &kgo.Record{Topic: dlqTopic, Key: orig.Key, Value: orig.Value, Headers: headers, Timestamp: orig.Timestamp}
}

// Parse reads the context of a dead letter; ok is false when the record has none.
func Parse[H Header](headers []H) (c Context, ok bool) {
	c.Partition, c.Offset = -1, -1
	for _, x := range headers {
		h := kv(x)
		v := string(h.Value)
		switch h.Key {
		case schemas.DLQStage:
			c.Stage, ok = v, true
		case schemas.DLQSourceTopic:
			c.SourceTopic = v
		case schemas.DLQSourcePartition:
			if p, err := strconv.ParseInt(v, 10, 32); err == nil {
				c.Partition = int32(p)
			}
		case schemas.DLQSourceOffset:
			if o, err := strconv.ParseInt(v, 10, 64); err == nil {
				c.Offset = o
			}
		case schemas.DLQErrorClass:
			c.Class = v
		case schemas.DLQErrorMessage:
			c.Message = v
		case schemas.DLQErrorPath:
			c.Path = v
		case schemas.DLQAttempts:
			c.Attempts, _ = strconv.Atoi(v)
		case schemas.DLQTime:
			c.Time, _ = time.Parse(time.RFC3339Nano, v)
		}
	}
	return c, ok
}

// Strip returns headers without the dead-letter context (the original headers, plus the
// replay count, which must survive so repeat offenders are parked, not looped).
func Strip[H Header](headers []H) []H {
	out := make([]H, 0, len(headers))
	for _, h := range headers {
		if !strings.HasPrefix(kv(h).Key, schemas.DLQHeaderPrefix) {
			out = append(out, h)
		}
	}
	return out
}
