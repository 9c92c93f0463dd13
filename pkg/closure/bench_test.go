package closure_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nix-community/go-nix/pkg/nar"

	"github.com/mkext4fs/mkext4fs/pkg/closure"
)

// benchStore is a closure of 8 store paths, 256 MiB of file contents in
// all: in each path a 24 MiB file, and 2 MiB in about 500 small files and
// 64 KiB ones, in nested directories.
type benchStore struct {
	root, graph string
	narFile     string // the NAR streams of all paths, concatenated
	narBytes    int64
}

var (
	benchOnce sync.Once
	bench     benchStore
	benchErr  error
)

func setupBench(b *testing.B) *benchStore {
	b.Helper()
	benchOnce.Do(func() { benchErr = makeBenchStore(&bench) })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return &bench
}

func makeBenchStore(s *benchStore) error {
	dir, err := os.MkdirTemp("", "closure-bench-")
	if err != nil {
		return err
	}
	s.root = filepath.Join(dir, "root")
	rng := rand.New(rand.NewSource(3))
	var graph []byte
	var paths []string
	for i := 0; i < 8; i++ {
		p := storePath(200+i, fmt.Sprintf("bench-%d", i))
		paths = append(paths, p)
		graph = fmt.Appendf(graph, "%s\n\n0\n", p)
		base := filepath.Join(s.root, p)
		if err := writeRandom(rng, filepath.Join(base, "big"), 24<<20); err != nil {
			return err
		}
		for j := 0; j < 500; j++ {
			size := 1 + rng.Intn(2048)
			if j%50 == 0 {
				size = 64 << 10
			}
			name := filepath.Join(base, fmt.Sprintf("d%d/e%d/f%d", j%7, j%13, j))
			if err := writeRandom(rng, name, size); err != nil {
				return err
			}
		}
	}
	s.graph = filepath.Join(dir, "graph")
	if err := os.WriteFile(s.graph, graph, 0o644); err != nil {
		return err
	}
	s.narFile = filepath.Join(dir, "nars")
	f, err := os.Create(s.narFile)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range paths {
		if err := nar.DumpPath(f, filepath.Join(s.root, p)); err != nil {
			return err
		}
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	s.narBytes = st.Size()
	return nil
}

func writeRandom(rng *rand.Rand, name string, size int) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	data := make([]byte, size)
	rng.Read(data)
	return os.WriteFile(name, data, 0o644)
}

// BenchmarkHash hashes the closure with one worker and with one per core.
// Compare its MB/s with BenchmarkSha256sum's, which hashes the same bytes.
func BenchmarkHash(b *testing.B) {
	s := setupBench(b)
	for _, workers := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			b.SetBytes(s.narBytes)
			cpu := cpuTime(b)
			defer func() { reportCPU(b, s.narBytes, cpuTime(b)-cpu) }()
			for i := 0; i < b.N; i++ {
				c, err := closure.Load([]string{s.graph}, closure.Options{})
				if err != nil {
					b.Fatal(err)
				}
				if err := c.Hash(context.Background(), closure.HashOptions{Root: s.root, Workers: workers}); err != nil {
					b.Fatal(err)
				}
				if int64(c.NarBytes()) != s.narBytes {
					b.Fatalf("hashed %d NAR bytes, want %d", c.NarBytes(), s.narBytes)
				}
			}
		})
	}
}

// BenchmarkSha256sum runs coreutils' sha256sum over the NAR bytes that
// BenchmarkHash produces, from the page cache as well.
func BenchmarkSha256sum(b *testing.B) {
	s := setupBench(b)
	if _, err := exec.LookPath("sha256sum"); err != nil {
		b.Skip("sha256sum not available")
	}
	b.SetBytes(s.narBytes)
	var cpu time.Duration
	for i := 0; i < b.N; i++ {
		cmd := exec.Command("sha256sum", s.narFile)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("sha256sum: %v\n%s", err, out)
		}
		cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	reportCPU(b, s.narBytes, cpu)
}

// cpuTime is the CPU time the process has used so far. On a busy machine
// bytes per CPU second say more about the code than bytes per second.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, bytes int64, cpu time.Duration) {
	if cpu > 0 {
		b.ReportMetric(float64(bytes)*float64(b.N)/1e6/cpu.Seconds(), "MB/cpu-s")
	}
}

// BenchmarkSHA256 is Go's SHA-256 alone on one core, the ceiling for
// BenchmarkHash with one worker.
func BenchmarkSHA256(b *testing.B) {
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	h := sha256.New()
	for i := 0; i < b.N; i++ {
		h.Write(buf)
	}
}
