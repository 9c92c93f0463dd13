package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPhases(t *testing.T) {
	for _, tc := range []struct {
		name, json string
		want       map[string]float64
	}{
		{"seconds object", `{"tool":"mkext4fs","seconds":{"plan":0.5,"populate":2.25,"total":3}}`,
			map[string]float64{"plan": 0.5, "populate": 2.25, "total": 3}},
		{"phases array", `{"phases":[{"name":"hash","seconds":1.5},{"phase":"mkfs","wall":0.25}]}`,
			map[string]float64{"hash": 1.5, "mkfs": 0.25}},
		{"nested timing object", `{"build":{"timings_s":{"verify":0.75}},"blocks":{"total":10}}`,
			map[string]float64{"verify": 0.75}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "report.json")
			if err := os.WriteFile(path, []byte(tc.json), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := phases(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s: got %v, want %v", k, got[k], v)
				}
			}
		})
	}
	path := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(path, []byte(`{"blocks":{"total":10}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := phases(path); err == nil {
		t.Errorf("a report without times gave %v", got)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{7}, 7},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Errorf("median of nothing is not NaN")
	}
}

// A results directory as bench/run.sh leaves it gives the ratios and goal
// verdicts computed from its numbers, with failed runs left out.
func TestTable(t *testing.T) {
	dir := t.TempDir()
	times := "set\tlabel\tmethod\trun\twall\tuser\tsys\tmaxrss_kib\timage_bytes\texit\tload1\tcheck\n" +
		"main\tmain\ta\t1\t4.00\t3\t1\t102400\t1048576000\t0\t0.5\tfsck clean\n" +
		"main\tmain\ta\t2\t6.00\t3\t1\t102400\t1048576000\t0\t0.5\t\n" +
		"main\tmain\ta\t3\t99.0\t3\t1\t102400\t-\t1\t0.5\t\n" +
		"main\tmain\tb\t1\t40.0\t30\t2\t4096\t2097152000\t0\t0.5\t\n" +
		"main\tmain\tc\t1\t60.0\t30\t9\t4096\t1153433600\t0\t0.5\t\n" +
		"main\tmain\te\t1\t8.0\t0.1\t6\t4096\t-\t0\t0.5\t\n" +
		"main\tsync\ta\t1\t8.00\t3\t1\t102400\t1048576000\t0\t0.5\t\n" +
		"main\tsamefree\ta\t1\t4.50\t3\t1\t102400\t1126170624\t0\t0.5\tfsck clean\n" +
		"flat\t0\ta\t1\t0.10\t0\t0\t4096\t-\t0\t0.5\t\n" +
		"flat\t80000\ta\t1\t1.10\t0\t0\t4096\t-\t0\t0.5\t\n" +
		"inodes\t25000\ta\t1\t1.00\t0\t0\t4096\t-\t0\t0.5\t\n" +
		"inodes\t50000\ta\t1\t2.80\t0\t0\t4096\t-\t0\t0.5\t\n"
	files := map[string]string{
		"times.tsv":                 times,
		"machine.env":               "nproc=2\nruns=3\n",
		"corpus-main-main.env":      "paths=1200\nentries=110000\n",
		"corpus-inodes-25000.env":   "entries=25000\n",
		"corpus-inodes-50000.env":   "entries=50000\n",
		"report-main-main-a-1.json": `{"seconds":{"plan":1,"total":4}}`,
		"report-main-main-a-2.json": `{"seconds":{"plan":2,"total":6}}`,
		"space-main-main-a.env":     "block_size=4096\nblocks=256000\nfree_blocks=16896\nreserved_blocks=12800\n",
		"space-main-main-c.env":     "block_size=4096\nblocks=281600\nfree_blocks=5120\nreserved_blocks=14080\n",
		"space-main-samefree-a.env": "block_size=4096\nblocks=274944\nfree_blocks=5124\nreserved_blocks=0\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out strings.Builder
	if err := run(dir, &out); err != nil {
		t.Fatal(err)
	}
	table := out.String()
	for _, want := range []string{
		"| 5.00 | 4.00–6.00, 1 failed |",                                          // median of the two good runs of (a)
		"| (a) at least 6x faster than (b) | 8.00x | met |",                       // 40 / 5
		"| (a) with `--sync` at least 6x faster than (b) | 5.00x | **not met** |", // 40 / 8
		"| " + syncName + " | 8.00 | 1 run |",
		"| (a) at least 10x faster than (c) | 12.00x | met |",
		"| (a) no slower than (e), `cp -a` | 0.62x the time | met |",
		"| 2.80 (1.40) |", // 2.8 / 1.0 per doubling, over linear
		"| 4 MiB at 25,000 names, 4 MiB at 50,000 | met |",
		"| time at most 1.3x linear per doubling of inodes (worst step) | 1.40 | **not met** |",
		"| one directory of 80,000 entries adds under 2 s | 1.00 s | met |",
		"| image of (a) no larger than (c)'s, for the same free space | 1074 vs 1100 MiB | met |",
		"| image of (a) at its defaults (16 MiB free beyond the 5% reserve) | 1000 vs 1100 MiB | met |",
		"(c)'s image of 1100 MiB keeps 20 MiB free (the reserve for root: 55 MiB)",
		"(a)'s image is 1074 MiB (20 MiB free (the reserve for root: 0 MiB))",
		"| 1.50 | 5.00 |", // per-phase medians
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
}
