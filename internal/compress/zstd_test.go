package compress

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/mkext4fs/mkext4fs/internal/testutil"
)

// input makes test data: text-like runs, zero runs (as in an image's free
// space) and random bytes that do not compress.
func input(size int, seed int64) []byte {
	r := rand.New(rand.NewSource(seed))
	b := make([]byte, 0, size)
	words := []string{"/nix/store/", "lib", "share", "bin", "\x7fELF", "\n", " ", "glibc-2.40"}
	for len(b) < size {
		switch r.Intn(3) {
		case 0:
			for i := r.Intn(2000); i > 0 && len(b) < size; i-- {
				b = append(b, words[r.Intn(len(words))]...)
			}
		case 1:
			b = append(b, make([]byte, r.Intn(50000))...)
		case 2:
			chunk := make([]byte, r.Intn(5000))
			r.Read(chunk)
			b = append(b, chunk...)
		}
	}
	return b[:size]
}

// unzstd decompresses with the zstd command and reports its frame count
// (zstd -lv).
func unzstd(t *testing.T, zstdPath string, compressed []byte) (data []byte, frames int) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "in.zst")
	if err := os.WriteFile(f, compressed, 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(zstdPath, "-d", "-c", "-q", f)
	cmd.Stderr = &stderr
	data, err := cmd.Output()
	if err != nil {
		t.Fatalf("zstd -d: %v: %s", err, stderr.String())
	}
	list, err := exec.Command(zstdPath, "-lv", f).CombinedOutput()
	if err != nil {
		t.Fatalf("zstd -lv: %v: %s", err, list)
	}
	m := regexp.MustCompile(`# Zstandard Frames: (\d+)`).FindSubmatch(list)
	if m == nil {
		t.Fatalf("zstd -lv printed no frame count:\n%s", list)
	}
	frames, _ = strconv.Atoi(string(m[1]))
	return data, frames
}

func TestZstdRoundTrip(t *testing.T) {
	zstdPath := testutil.RequireTool(t, "zstd")
	const fs = 64 << 10
	tests := []struct {
		name       string
		size       int
		frameSize  int
		wantFrames int
	}{
		{"empty", 0, fs, 1},
		{"one byte", 1, fs, 1},
		{"short of a frame", fs - 1, fs, 1},
		{"exactly one frame", fs, fs, 1},
		{"one byte over", fs + 1, fs, 2},
		{"many frames", 10*fs + 12345, fs, 11},
		{"default frame size", DefaultFrameSize + 5, 0, 2},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := input(tt.size, int64(i))
			var outputs [][]byte
			for _, workers := range []int{1, 3, 0} {
				var out bytes.Buffer
				opts := ZstdOptions{Workers: workers, FrameSize: tt.frameSize}
				if err := opts.Compress(context.Background(), &out, bytes.NewReader(in)); err != nil {
					t.Fatalf("workers %d: %v", workers, err)
				}
				got, frames := unzstd(t, zstdPath, out.Bytes())
				if !bytes.Equal(got, in) {
					t.Fatalf("workers %d: zstd -d gave %d bytes that differ from the %d input bytes", workers, len(got), len(in))
				}
				if frames != tt.wantFrames {
					t.Errorf("workers %d: zstd -lv counts %d frames, want %d", workers, frames, tt.wantFrames)
				}
				outputs = append(outputs, out.Bytes())
			}
			for i := 1; i < len(outputs); i++ {
				if !bytes.Equal(outputs[0], outputs[i]) {
					t.Errorf("output depends on the number of workers (%d vs %d bytes)", len(outputs[0]), len(outputs[i]))
				}
			}
		})
	}
}

// TestZstdCompresses makes sure the output is not merely stored: zeros must
// shrink to almost nothing.
func TestZstdCompresses(t *testing.T) {
	var out bytes.Buffer
	if err := Zstd(context.Background(), &out, bytes.NewReader(make([]byte, 64<<20))); err != nil {
		t.Fatal(err)
	}
	if out.Len() > 64<<10 {
		t.Errorf("64 MiB of zeros compressed to %d bytes", out.Len())
	}
}

type failingWriter struct{ after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		return 0, errors.New("disk full")
	}
	w.after--
	return len(p), nil
}

// failingReader returns data, then err (io.EOF when nil).
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		if r.err == nil {
			return 0, io.EOF
		}
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestZstdErrors(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	data := input(1<<20, 7)
	tests := []struct {
		name    string
		ctx     context.Context
		dst     func() *failingWriter
		src     func() *failingReader
		wantErr string
	}{
		{"write fails at once", context.Background(),
			func() *failingWriter { return &failingWriter{} },
			func() *failingReader { return &failingReader{data: data} },
			"zstd: write: disk full"},
		{"write fails later", context.Background(),
			func() *failingWriter { return &failingWriter{after: 3} },
			func() *failingReader { return &failingReader{data: data} },
			"zstd: write: disk full"},
		{"read fails", context.Background(),
			func() *failingWriter { return &failingWriter{after: 1 << 30} },
			func() *failingReader {
				return &failingReader{data: data[:100000], err: errors.New("input/output error")}
			},
			"zstd: read: input/output error"},
		{"cancelled", cancelled,
			func() *failingWriter { return &failingWriter{after: 1 << 30} },
			func() *failingReader { return &failingReader{data: data} },
			"context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ZstdOptions{Workers: 2, FrameSize: 4096}.Compress(tt.ctx, tt.dst(), tt.src())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
