// Command tabulate turns the results directory of bench/run.sh into the
// Markdown tables of the README's performance section.
//
// It reads from DIR: times.tsv (one line per timed run: set, label, method,
// run, wall, user, sys, peak RSS in KiB, image bytes, exit status, load, a
// check note), machine.env and corpus-SET-LABEL.env (shell assignments),
// report-main-main-a-N.json (mkext4fs build --report; the per-phase seconds
// are taken from its "seconds" object, or failing that from any object of
// numbers whose key names a time), and notes.txt (lines quoted as they are).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: tabulate RESULTS-DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tabulate:", err)
		os.Exit(1)
	}
}

// sample is one timed run.
type sample struct {
	set, label, method string
	wall, user, sys    float64
	rssKiB             float64
	image              float64 // bytes, NaN if none
	exit               int
	load               float64
	check              string
}

// stats summarises the successful runs of one method on one corpus.
type stats struct {
	n, failed       int
	wall, user, sys float64 // medians
	wallMin         float64
	wallMax         float64
	rssMiB          float64
	imageMiB        float64
	load            float64 // highest 1-minute load average seen at a start
	check           string
	exit            int // of a failed run
}

type key struct{ set, label, method string }

func readTimes(path string) (map[key]*stats, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	groups := map[key][]sample{}
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		fields := strings.Split(sc.Text(), "\t")
		if line == 1 || len(fields) < 11 {
			continue
		}
		num := func(i int) float64 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return math.NaN()
			}
			return v
		}
		s := sample{set: fields[0], label: fields[1], method: fields[2], wall: num(4), user: num(5), sys: num(6),
			rssKiB: num(7), image: num(8), load: num(10)}
		s.exit, err = strconv.Atoi(fields[9])
		if err != nil {
			s.exit = -1
		}
		if len(fields) > 11 {
			s.check = fields[11]
		}
		k := key{s.set, s.label, s.method}
		groups[k] = append(groups[k], s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	out := map[key]*stats{}
	for k, ss := range groups {
		st := &stats{}
		var wall, user, sys, rss, image []float64
		for _, s := range ss {
			if s.check != "" && st.check == "" {
				st.check = s.check
			}
			if !math.IsNaN(s.load) && s.load > st.load {
				st.load = s.load
			}
			if s.exit != 0 {
				st.failed++
				st.exit = s.exit
				continue
			}
			st.n++
			wall, user, sys, rss = append(wall, s.wall), append(user, s.user), append(sys, s.sys), append(rss, s.rssKiB)
			if !math.IsNaN(s.image) {
				image = append(image, s.image)
			}
		}
		st.wall, st.user, st.sys = median(wall), median(user), median(sys)
		st.rssMiB = median(rss) / 1024
		st.imageMiB = median(image) / (1 << 20)
		st.wallMin, st.wallMax = minMax(wall)
		out[k] = st
	}
	return out, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minMax(v []float64) (float64, float64) {
	if len(v) == 0 {
		return math.NaN(), math.NaN()
	}
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return lo, hi
}

func readEnv(path string) map[string]string {
	env := map[string]string{}
	data, err := os.ReadFile(path)
	if err != nil {
		return env
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env
}

// phases reads the per-phase seconds of one build report.
func phases(path string) (map[string]float64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	top, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: not a JSON object", path)
	}
	for _, k := range []string{"seconds", "phases", "phase_seconds", "timings", "durations", "times"} {
		if m := numbers(top[k]); len(m) > 0 {
			return m, nil
		}
	}
	// Any object of numbers under a key that names a time.
	var found map[string]float64
	var walk func(any, string)
	walk = func(v any, name string) {
		switch x := v.(type) {
		case map[string]any:
			lname := strings.ToLower(name)
			if strings.Contains(lname, "second") || strings.Contains(lname, "time") || strings.Contains(lname, "timing") ||
				strings.Contains(lname, "duration") || strings.Contains(lname, "phase") {
				if m := numbers(x); len(m) > 0 && found == nil {
					found = m
				}
			}
			for k, c := range x {
				walk(c, k)
			}
		case []any:
			for _, c := range x {
				walk(c, name)
			}
		}
	}
	walk(top, "")
	if found == nil {
		return nil, fmt.Errorf("%s: no per-phase times found", path)
	}
	return found, nil
}

// numbers reads {"name": seconds} or [{"name"|"phase": …, "seconds"|…: …}].
func numbers(v any) map[string]float64 {
	out := map[string]float64{}
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if f, ok := c.(float64); ok {
				out[k] = f
			}
		}
	case []any:
		for _, c := range x {
			o, ok := c.(map[string]any)
			if !ok {
				continue
			}
			name, _ := o["name"].(string)
			if name == "" {
				name, _ = o["phase"].(string)
			}
			for _, k := range []string{"seconds", "wall", "duration", "s"} {
				if f, ok := o[k].(float64); ok && name != "" {
					out[name] = f
					break
				}
			}
		}
	}
	return out
}

var methodNames = map[string]string{
	"a": "(a) `mkext4fs build` (text closure: hashes every path, verifies)",
	"A": "(a') `mkext4fs build` on `.attrs.json`, `--no-verify-hashes`",
	"b": "(b) `mkfs.ext4 -d` straight on the tree",
	"c": "(c) nixpkgs `make-ext4-fs.nix`: `cp -a`, `mkfs.ext4 -d`, `fsck`, `resize2fs -M`, +16 MiB",
	"d": "(d) 2015 seed: `find \\| while read` into one `debugfs` (names quoted)",
	"e": "(e) `cp -a` of the tree (the floor)",
	"r": "(r) reading the tree (`tar \\| cat`)",
}

var methodOrder = []string{"a", "A", "b", "c", "d", "e", "r"}

// syncName is (a) run with --sync: the image forced to the disk before the
// build ends, as the e2fsprogs tools of (b) and (c) force theirs.
const syncName = "(a) with `--sync` (the image forced to the disk at the end, as (b) and (c) do)"

func secs(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}

func mib(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.0f", v)
}

func ratio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func yes(ok bool, known bool) string {
	if !known {
		return "not measured"
	}
	if ok {
		return "met"
	}
	return "**not met**"
}

func thousands(s string) string {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return s
	}
	str := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range str {
		if i > 0 && (len(str)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func gb(s string) string {
	n, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return s
	}
	return fmt.Sprintf("%.2f GB", n/1e9)
}

func run(dir string, w io.Writer) error {
	times, err := readTimes(filepath.Join(dir, "times.tsv"))
	if err != nil {
		return err
	}
	machine := readEnv(filepath.Join(dir, "machine.env"))
	corpus := readEnv(filepath.Join(dir, "corpus-main-main.env"))
	get := func(set, label, m string) *stats {
		if s := times[key{set, label, m}]; s != nil {
			return s
		}
		return &stats{wall: math.NaN(), user: math.NaN(), sys: math.NaN(), rssMiB: math.NaN(), imageMiB: math.NaN()}
	}

	fmt.Fprintf(w, "Machine: %s CPUs (%s), %s RAM, %s, %s on the work directory; e2fsprogs %s, libfaketime %s, %s; mkext4fs %s (%s). Measured %s, page cache warm (the corpus read before every run, nothing dropped, a sync before every run).\n\n",
		machine["nproc"], machine["cpu"], machine["memory"], machine["kernel"], machine["filesystem"],
		machine["e2fsprogs"], machine["faketime"], machine["go"], machine["mkext4fs"], machine["mkext4fs_commit"], machine["date"])
	fmt.Fprintf(w, "Corpus (`go run ./bench/corpus -scale %s -seed %s`): %s store paths, %s names (%s inodes: %s directories, %s files, %s symlinks of which %s longer than 60 bytes, %s extra hardlinks), %s in regular files, largest file %s, biggest directory %s entries.\n\n",
		corpus["scale"], corpus["seed"], thousands(corpus["paths"]), thousands(corpus["entries"]), thousands(corpus["inodes"]),
		thousands(corpus["dirs"]), thousands(corpus["files"]), thousands(corpus["symlinks"]), thousands(corpus["long_symlinks"]),
		thousands(corpus["hardlinks"]), gb(corpus["bytes"]), gb(corpus["largest"]), thousands(corpus["biggest_dir"]))

	fmt.Fprintf(w, "| method | wall s | range | user s | sys s | CPU / (a) | peak RSS MiB | image MiB | wall / (a) | check of run 1 |\n")
	fmt.Fprintf(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	a := get("main", "main", "a")
	var loads []float64
	row := func(name string, s *stats) {
		loads = append(loads, s.load)
		if s.n == 0 {
			fmt.Fprintf(w, "| %s | failed (exit %d) | | | | | | | | %s |\n", name, s.exit, s.check)
			return
		}
		rng := fmt.Sprintf("%s–%s", secs(s.wallMin), secs(s.wallMax))
		if s.n == 1 {
			rng = "1 run"
		}
		if s.failed > 0 {
			rng += fmt.Sprintf(", %d failed", s.failed)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name, secs(s.wall), rng,
			secs(s.user), secs(s.sys), ratio(s.user+s.sys, a.user+a.sys), mib(s.rssMiB), mib(s.imageMiB), ratio(s.wall, a.wall), s.check)
	}
	for _, m := range methodOrder {
		if s := times[key{"main", "main", m}]; s != nil {
			row(methodNames[m], s)
		}
		if s := times[key{"main", "sync", m}]; s != nil && m == "a" {
			row(syncName, s)
		}
	}
	_, maxLoad := minMax(loads)
	fmt.Fprintf(w, "\nMedians of %s runs, methods interleaved; highest 1-minute load average at the start of a run: %.1f. (b)'s image is sized generously and not shrunk; (d) writes hardlinked files as separate inodes; (c) keeps hardlinks only within a store path (one `cp -a` per path).\n",
		machine["runs"], maxLoad)
	same := get("main", "samefree", "a")
	fmt.Fprintln(w)
	fmt.Fprintln(w, spaceLine(dir, a, get("main", "main", "c"), same))
	if notes, err := os.ReadFile(filepath.Join(dir, "notes.txt")); err == nil {
		fmt.Fprintln(w)
		for _, line := range strings.Split(strings.TrimSpace(string(notes)), "\n") {
			fmt.Fprintf(w, "- %s\n", line)
		}
	}

	// Per-phase times of (a).
	reports, _ := filepath.Glob(filepath.Join(dir, "report-main-main-a-*.json"))
	perPhase := map[string][]float64{}
	for _, r := range reports {
		ph, err := phases(r)
		if err != nil {
			fmt.Fprintf(os.Stderr, "tabulate: %v\n", err)
			continue
		}
		for k, v := range ph {
			perPhase[k] = append(perPhase[k], v)
		}
	}
	if len(perPhase) > 0 {
		known := []string{"parse", "closure", "plan", "size", "mkfs", "populate", "index", "populate_staged", "merge",
			"script", "checksums", "registration", "hash", "hash_wait", "check", "verify", "compress", "sync"}
		var names, rest []string
		for _, k := range known {
			if _, ok := perPhase[k]; ok {
				names = append(names, k)
			}
		}
		for k := range perPhase {
			if !contains(known, k) && k != "total" {
				rest = append(rest, k)
			}
		}
		sort.Strings(rest)
		names = append(names, rest...)
		if _, ok := perPhase["total"]; ok {
			names = append(names, "total")
		}
		fmt.Fprintf(w, "\n(a) per phase, from `--report` (median seconds of %d runs):\n\n|", len(reports))
		for _, n := range names {
			fmt.Fprintf(w, " %s |", n)
		}
		fmt.Fprintf(w, "\n|%s\n|", strings.Repeat(" ---: |", len(names)))
		for _, n := range names {
			fmt.Fprintf(w, " %s |", secs(median(perPhase[n])))
		}
		fmt.Fprintln(w)
	}

	// Scaling by corpus size.
	seriesMethods := func(set string) []string {
		var ms []string
		for _, m := range methodOrder {
			for k := range times {
				if k.set == set && k.method == m {
					ms = append(ms, m)
					break
				}
			}
		}
		return ms
	}
	labels := func(set string) []string {
		seen := map[string]bool{}
		var ls []string
		for k := range times {
			if k.set == set && !seen[k.label] {
				seen[k.label] = true
				ls = append(ls, k.label)
			}
		}
		sort.Slice(ls, func(i, j int) bool { return atoi(ls[i]) < atoi(ls[j]) })
		return ls
	}
	var worstGrowth, maxRSS = math.NaN(), math.NaN()
	// (a)'s peak RSS on the smallest and the largest corpus of the series.
	var rssFirst, rssLast struct {
		names string
		mib   float64
	}
	if ls := labels("inodes"); len(ls) > 0 {
		ms := seriesMethods("inodes")
		fmt.Fprintf(w, "\nScaling with the corpus (same shape, `-inodes N`; median of %s runs): wall seconds, and in brackets the growth per doubling relative to linear (1.00 = linear).\n\n", machine["series_runs"])
		fmt.Fprintf(w, "| names | inodes | data |")
		for _, m := range ms {
			fmt.Fprintf(w, " (%s) wall s | (%s) peak RSS MiB |", m, m)
		}
		fmt.Fprintf(w, "\n| ---: | ---: | ---: |%s\n", strings.Repeat(" ---: | ---: |", len(ms)))
		prev := map[string][2]float64{}
		for _, l := range ls {
			env := readEnv(filepath.Join(dir, "corpus-inodes-"+l+".env"))
			n := float64(atoi(env["entries"]))
			fmt.Fprintf(w, "| %s | %s | %s |", thousands(env["entries"]), thousands(env["inodes"]), gb(env["bytes"]))
			for _, m := range ms {
				s := get("inodes", l, m)
				growth := ""
				if p, ok := prev[m]; ok && n > 0 && !math.IsNaN(s.wall) {
					// Normalise to a doubling of the name count.
					g := math.Pow(s.wall/p[1], math.Log(2)/math.Log(n/p[0])) / 2
					growth = fmt.Sprintf(" (%.2f)", g)
					if m == "a" && (math.IsNaN(worstGrowth) || g > worstGrowth) {
						worstGrowth = g
					}
				}
				if m == "a" && !math.IsNaN(s.rssMiB) && (math.IsNaN(maxRSS) || s.rssMiB > maxRSS) {
					maxRSS = s.rssMiB
				}
				if m == "a" && !math.IsNaN(s.rssMiB) {
					if rssFirst.names == "" {
						rssFirst.names, rssFirst.mib = thousands(env["entries"]), s.rssMiB
					}
					rssLast.names, rssLast.mib = thousands(env["entries"]), s.rssMiB
				}
				prev[m] = [2]float64{n, s.wall}
				fmt.Fprintf(w, " %s%s | %s |", secs(s.wall), growth, mib(s.rssMiB))
			}
			fmt.Fprintln(w)
		}
	}
	flatAdds := math.NaN()
	if ls := labels("flat"); len(ls) > 0 {
		ms := seriesMethods("flat")
		fmt.Fprintf(w, "\nOne directory of N entries (one store path, `-flat N`; (a) median of %s runs, the others one run): wall seconds, and what the directory adds over N = 0.\n\n", machine["series_runs"])
		fmt.Fprintf(w, "| entries |")
		for _, m := range ms {
			fmt.Fprintf(w, " (%s) wall s | (%s) adds s |", m, m)
		}
		fmt.Fprintf(w, "\n| ---: |%s\n", strings.Repeat(" ---: | ---: |", len(ms)))
		for _, l := range ls {
			fmt.Fprintf(w, "| %s |", thousands(l))
			for _, m := range ms {
				s, zero := get("flat", l, m), get("flat", "0", m)
				adds := s.wall - zero.wall
				if m == "a" {
					flatAdds = adds
				}
				fmt.Fprintf(w, " %s | %s |", secs(s.wall), secs(adds))
			}
			fmt.Fprintln(w)
		}
	}

	// The goals of issue 5.
	b, c, e := get("main", "main", "b"), get("main", "main", "c"), get("main", "main", "e")
	rss := a.rssMiB
	if !math.IsNaN(maxRSS) && maxRSS > rss {
		rss = maxRSS
	}
	lastFlat := ""
	if ls := labels("flat"); len(ls) > 0 {
		lastFlat = thousands(ls[len(ls)-1])
	}
	fmt.Fprintf(w, "\n| goal | measured | |\n| --- | ---: | --- |\n")
	fmt.Fprintf(w, "| (a) at least 6x faster than (b) | %sx | %s |\n", ratio(b.wall, a.wall), yes(b.wall/a.wall >= 6, !math.IsNaN(a.wall*b.wall)))
	if as := times[key{"main", "sync", "a"}]; as != nil {
		fmt.Fprintf(w, "| (a) with `--sync` at least 6x faster than (b) | %sx | %s |\n", ratio(b.wall, as.wall), yes(b.wall/as.wall >= 6, !math.IsNaN(as.wall*b.wall)))
	}
	fmt.Fprintf(w, "| (a) at least 10x faster than (c) | %sx | %s |\n", ratio(c.wall, a.wall), yes(c.wall/a.wall >= 10, !math.IsNaN(a.wall*c.wall)))
	fmt.Fprintf(w, "| (a) no slower than (e), `cp -a` | %sx the time | %s |\n", ratio(a.wall, e.wall), yes(a.wall <= e.wall, !math.IsNaN(a.wall*e.wall)))
	fmt.Fprintf(w, "| peak RSS of (a) at most 200 MiB (largest over all corpora) | %s MiB | %s |\n", mib(rss), yes(rss <= 200, !math.IsNaN(rss)))
	fmt.Fprintf(w, "| peak RSS of (a) flat in corpus size (the largest corpus of the series within 1.5x of the smallest) | %s MiB at %s names, %s MiB at %s | %s |\n",
		mib(rssFirst.mib), rssFirst.names, mib(rssLast.mib), rssLast.names,
		yes(rssLast.mib <= 1.5*rssFirst.mib, rssFirst.names != "" && rssFirst.names != rssLast.names))
	fmt.Fprintf(w, "| time at most 1.3x linear per doubling of inodes (worst step) | %s | %s |\n", fmt2(worstGrowth), yes(worstGrowth <= 1.3, !math.IsNaN(worstGrowth)))
	fmt.Fprintf(w, "| one directory of %s entries adds under 2 s | %s s | %s |\n", lastFlat, secs(flatAdds), yes(flatAdds < 2, !math.IsNaN(flatAdds)))
	fmt.Fprintf(w, "| image of (a) no larger than (c)'s, for the same free space | %s vs %s MiB | %s |\n", mib(same.imageMiB), mib(c.imageMiB), yes(same.imageMiB <= c.imageMiB, !math.IsNaN(same.imageMiB*c.imageMiB)))
	fmt.Fprintf(w, "| image of (a) at its defaults (16 MiB free beyond the 5%% reserve) | %s vs %s MiB | %s |\n", mib(a.imageMiB), mib(c.imageMiB), yes(a.imageMiB <= c.imageMiB, !math.IsNaN(a.imageMiB*c.imageMiB)))
	return nil
}

// spaceLine says how much free space (a) and (c) keep in their images, and
// what size (a)'s image has when it keeps as many free blocks as (c)'s.
func spaceLine(dir string, a, c, same *stats) string {
	space := func(m string) string {
		env := readEnv(filepath.Join(dir, "space-main-"+m+".env"))
		bs := float64(atoi(env["block_size"]))
		if env["free_blocks"] == "" || bs == 0 {
			return "unknown free space"
		}
		return fmt.Sprintf("%s MiB free (the reserve for root: %s MiB)",
			mib(float64(atoi(env["free_blocks"]))*bs/(1<<20)), mib(float64(atoi(env["reserved_blocks"]))*bs/(1<<20)))
	}
	return fmt.Sprintf("Free space: (a)'s image of %s MiB keeps %s; (c)'s image of %s MiB keeps %s. "+
		"Given (c)'s free space (`--reserved-percent 0 --headroom` of (c)'s free bytes, one run), (a)'s image is %s MiB (%s).",
		mib(a.imageMiB), space("main-a"), mib(c.imageMiB), space("main-c"), mib(same.imageMiB), space("samefree-a"))
}

func fmt2(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
