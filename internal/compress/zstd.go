package compress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// DefaultFrameSize is the input size of each frame. Larger frames compress a
// little better (matches cannot reach across frames); at 16 MiB the loss
// against one single-threaded stream is about 1% on binaries and text,
// while memory stays near 2*FrameSize per worker.
const DefaultFrameSize = 16 << 20

// maxDefaultWorkers caps the default number of workers so that memory stays
// bounded on machines with many cores.
const maxDefaultWorkers = 8

// ZstdOptions tunes Zstd. The zero value is the default.
type ZstdOptions struct {
	// Workers is the number of frames compressed at once; 0 means
	// GOMAXPROCS, at most 8. It does not change the output.
	Workers int
	// FrameSize is the number of input bytes per frame; 0 means
	// DefaultFrameSize. It changes the output.
	FrameSize int
}

// Zstd compresses src into dst with the default options, at zstd's default
// level, on several cores. See ZstdOptions.Compress.
func Zstd(ctx context.Context, dst io.Writer, src io.Reader) error {
	return ZstdOptions{}.Compress(ctx, dst, src)
}

// frame is one unit of work: a slice of the input and, once done is closed,
// its compressed form. Frames are recycled through a pool with their buffers.
type frame struct {
	in, out []byte
	done    chan struct{}
}

// Compress reads src to its end and writes the zstd stream to dst. Frames
// are compressed in parallel and written in input order. It returns an error
// naming the step (read, write) that failed, or ctx's cause when ctx was
// cancelled before the whole stream was written; dst then holds a truncated
// stream that the caller should discard.
func (o ZstdOptions) Compress(ctx context.Context, dst io.Writer, src io.Reader) error {
	workers := o.Workers
	if workers <= 0 {
		workers = min(runtime.GOMAXPROCS(0), maxDefaultWorkers)
	}
	frameSize := o.FrameSize
	if frameSize <= 0 {
		frameSize = DefaultFrameSize
	}
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithEncoderConcurrency(workers),
		zstd.WithEncoderCRC(true),
		// An empty input still gives a valid stream that zstd -d accepts.
		zstd.WithZeroFrames(true))
	if err != nil {
		return fmt.Errorf("zstd: set up encoder: %w", err)
	}
	defer enc.Close()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	pool := sync.Pool{New: func() any { return &frame{in: make([]byte, frameSize)} }}
	// A frame sits in inFlight from the moment it is read until it is
	// written; the capacity bounds the memory in use.
	inFlight := make(chan *frame, workers+1)
	todo := make(chan *frame)

	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range todo {
				f.out = enc.EncodeAll(f.in, f.out[:0])
				close(f.done)
			}
		}()
	}

	written := make(chan error, 1)
	go func() {
		var err error
		for f := range inFlight {
			if err == nil {
				select {
				case <-f.done:
					if _, werr := dst.Write(f.out); werr != nil {
						err = fmt.Errorf("zstd: write: %w", werr)
						cancel(err)
					}
				case <-ctx.Done():
					err = context.Cause(ctx)
				}
			}
			<-f.done // a worker may still be using the buffers
			pool.Put(f)
		}
		written <- err
	}()

	readErr := readFrames(ctx, src, frameSize, &pool, inFlight, todo)
	if readErr != nil {
		cancel(readErr)
	}
	close(todo)
	close(inFlight)
	writeErr := <-written
	wg.Wait()
	if readErr != nil {
		return readErr
	}
	return writeErr
}

// readFrames cuts src into frames and hands each to the writer (in order)
// and to a worker. It returns nil at the end of src.
func readFrames(ctx context.Context, src io.Reader, frameSize int, pool *sync.Pool, inFlight, todo chan<- *frame) error {
	for first := true; ; first = false {
		f := pool.Get().(*frame)
		n, err := io.ReadFull(src, f.in[:frameSize])
		eof := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		if err != nil && !eof {
			pool.Put(f)
			return fmt.Errorf("zstd: read: %w", err)
		}
		if n == 0 && !first {
			pool.Put(f)
			return nil
		}
		f.in = f.in[:n]
		f.done = make(chan struct{})
		select {
		case inFlight <- f:
		case <-ctx.Done():
			pool.Put(f)
			return context.Cause(ctx)
		}
		select {
		case todo <- f:
		case <-ctx.Done():
			close(f.done) // the writer waits for it
			return context.Cause(ctx)
		}
		if eof {
			return nil
		}
	}
}
