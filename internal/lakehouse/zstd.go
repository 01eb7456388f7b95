package lakehouse

import (
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go/format"
)

// ZstdCodec compresses Parquet pages with zstd at Level, with a match window no larger
// than a page buffer. parquet-go's own zstd codec keeps zstd's default 8 MiB window,
// for which each encoder allocates a 16 MiB history buffer; pages are compressed one at
// a time and are at most a page buffer (FileOptions.PageBufferSize, 256 KiB by default),
// so a match can never reach further back than that and the larger window only costs
// memory: 16 MiB per encoder, one encoder per page compressed at once (the sinks write
// several tables' files at a time), allocated again after each garbage collection
// empties the pool. The compressed pages are byte for byte the same
// (TestZstdCodecSameOutput). It is safe for concurrent use.
type ZstdCodec struct {
	// Level is zstd's encoder level. Default zstd.SpeedDefault.
	Level zstd.EncoderLevel
	// Window is the match window (a power of two, at least 1 KiB). Default 256 KiB.
	Window int

	encoders sync.Pool // *zstd.Encoder
	decoders sync.Pool // *zstd.Decoder
}

// String and CompressionCodec name the codec as parquet-go's compress.Codec does.
func (c *ZstdCodec) String() string { return "ZSTD" }

// CompressionCodec is the codec's code in the Parquet format.
func (c *ZstdCodec) CompressionCodec() format.CompressionCodec { return format.Zstd }

// Encode writes the compressed src to dst[:0] and returns it.
func (c *ZstdCodec) Encode(dst, src []byte) ([]byte, error) {
	e, _ := c.encoders.Get().(*zstd.Encoder)
	if e == nil {
		level, window := c.Level, c.Window
		if level == 0 {
			level = zstd.SpeedDefault
		}
		if window == 0 {
			window = 256 << 10
		}
		var err error
		e, err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(level),
			zstd.WithWindowSize(window),
			zstd.WithLowerEncoderMem(true),
			zstd.WithEncoderConcurrency(1),
			zstd.WithZeroFrames(true),
			zstd.WithEncoderCRC(false),
		)
		if err != nil {
			return nil, err
		}
	}
	out := e.EncodeAll(src, dst[:0])
	c.encoders.Put(e)
	return out, nil
}

// Decode writes the decompressed src to dst[:0] and returns it.
func (c *ZstdCodec) Decode(dst, src []byte) ([]byte, error) {
	d, _ := c.decoders.Get().(*zstd.Decoder)
	if d == nil {
		var err error
		if d, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true)); err != nil {
			return nil, err
		}
	}
	out, err := d.DecodeAll(src, dst[:0])
	c.decoders.Put(d)
	return out, err
}
