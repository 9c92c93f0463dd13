package main

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// Sizes of the corpus at scale 1.
const (
	basePaths   = 1200
	baseEntries = 110_000
	baseBytes   = 1_500_000_000

	// The three big flat directories.
	baseMan3     = 14_000
	baseFirmware = 10_000
	baseModules  = 10_000

	// Largest file of the long tail.
	maxTailFile = 320 << 20
)

type kind uint8

const (
	kindDir kind = iota
	kindFile
	kindSymlink
	kindHardlink
)

// node is one name in the planned tree.
type node struct {
	name     string
	kind     kind
	exec     bool   // file mode 0555 instead of 0444
	size     int64  // regular files
	seed     uint64 // regular files: the content
	zeros    bool   // regular files: some aligned 4 KiB blocks are all zero
	target   string // symlinks
	link     *node  // hardlinks: the file whose inode this name shares
	children []*node
	taken    map[string]bool // names used in a directory, while planning
	host     string          // path on the host once written
}

// storePath is one path of the closure.
type storePath struct {
	base    string // <hash>-<name>
	root    *node
	refs    map[int]bool
	narHash string // sha256:<nix-base32>, once hashed
	narSize int64
}

// corpus is a planned closure.
type corpus struct {
	paths []*storePath
}

// counts summarises a planned corpus.
type counts struct {
	paths, entries, dirs, files, symlinks, hardlinks int
	longSymlinks                                     int
	bytes                                            int64 // regular files, each inode once
	largest                                          int64
	biggestDir                                       int
}

func (c *corpus) count() counts {
	var n counts
	n.paths = len(c.paths)
	var walk func(*node)
	walk = func(x *node) {
		n.entries++
		switch x.kind {
		case kindDir:
			n.dirs++
			if len(x.children) > n.biggestDir {
				n.biggestDir = len(x.children)
			}
			for _, ch := range x.children {
				walk(ch)
			}
		case kindFile:
			n.files++
			n.bytes += x.size
			if x.size > n.largest {
				n.largest = x.size
			}
		case kindSymlink:
			n.symlinks++
			if len(x.target) > 60 {
				n.longSymlinks++
			}
		case kindHardlink:
			n.hardlinks++
		}
	}
	for _, p := range c.paths {
		walk(p.root)
	}
	return n
}

// style says what a generated subtree looks like.
type style struct {
	exts      []string
	median    float64 // file size median, bytes
	sigma     float64 // log-normal spread
	pExec     float64
	pSymlink  float64
	pDup      float64 // hardlink to an identical file elsewhere
	pDir      float64
	fanoutMax int
	maxDepth  int
}

var (
	styleData = style{
		exts:   []string{".txt", ".json", ".xml", ".html", ".svg", ".png", ".conf", ".dat", ".js", ".css", ".ui", ".mo", ".pm", ".h", ".tmpl", ""},
		median: 1500, sigma: 1.6, pExec: 0.03, pSymlink: 0.07, pDup: 0.04, pDir: 0.10, fanoutMax: 40, maxDepth: 6,
	}
	stylePython = style{
		exts:   []string{".py", ".py", ".py", ".pyc", ".pyi", ".json", ".typed", ".so"},
		median: 2500, sigma: 1.4, pExec: 0.02, pSymlink: 0.01, pDup: 0.05, pDir: 0.16, fanoutMax: 30, maxDepth: 7,
	}
	stylePlugins = style{
		exts:   []string{".so", ".so", ".la", ".conf", ".typelib", ".cache"},
		median: 12_000, sigma: 1.4, pExec: 0.6, pSymlink: 0.05, pDup: 0.02, pDir: 0.06, fanoutMax: 60, maxDepth: 4,
	}
)

// planner draws the corpus from one random stream.
type planner struct {
	r        *rand.Rand
	seed     uint64
	scale    float64
	c        *corpus
	nfile    uint64
	pool     [2][]*node // files that later names may hardlink, by exec bit
	licences []*node    // first copy of each licence text
	bigDirs  []*node    // lib/ and bin/ directories that can take a tail file
	bigRefs  []int      // store path of each bigDirs entry
}

func newPlanner(seed uint64, scale float64) *planner {
	return &planner{
		r:        rand.New(rand.NewPCG(seed, 0x6e69782d73746f72)),
		seed:     seed,
		scale:    scale,
		c:        &corpus{},
		licences: make([]*node, 12),
	}
}

// scaled rounds n*scale, at least min.
func (p *planner) scaled(n float64, min int) int {
	v := int(math.Round(n * p.scale))
	if v < min {
		return min
	}
	return v
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// contentSeed gives every file its own content stream.
func (p *planner) contentSeed() uint64 {
	p.nfile++
	return splitmix(p.seed*0x100000001b3 ^ p.nfile)
}

var syllables = strings.Fields(`ab ac al an ar at ba be bi bo ca ce ch co cu da de di do el en er es et fa fi fo
ga ge gi go ha he hi ho id il in ir is it ja ka ke ki ko la le li lo lu ma me mi mo mu na ne ni no nu ob od ol
om on op or os ot pa pe pi po pu qu ra re ri ro ru sa se si so su ta te ti to tu ul um un ur us ut va ve vi vo
wa we xa xe ya yo za ze zo`)

func (p *planner) word(min, max int) string {
	n := min + p.r.IntN(max-min+1)
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(syllables[p.r.IntN(len(syllables))])
	}
	return b.String()
}

func (p *planner) version() string {
	switch p.r.IntN(4) {
	case 0:
		return fmt.Sprintf("%d.%d", p.r.IntN(30), p.r.IntN(40))
	case 1:
		return fmt.Sprintf("%d.%d.%d", p.r.IntN(12), p.r.IntN(30), p.r.IntN(20))
	case 2:
		return fmt.Sprintf("20%02d%02d%02d", 15+p.r.IntN(10), 1+p.r.IntN(12), 1+p.r.IntN(28))
	default:
		return fmt.Sprintf("%d.%d.%d-%d", p.r.IntN(6), p.r.IntN(20), p.r.IntN(10), 1+p.r.IntN(60))
	}
}

// storeHash is the 32-character nix-base32 part of a store path name.
func (p *planner) storeHash(i int) string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], p.seed)
	binary.LittleEndian.PutUint64(b[8:], uint64(i))
	sum := sha256.Sum256(b[:])
	return nixbase32.EncodeToString(sum[:20])
}

// logNormal draws a size around median, clamped to [0, max].
func (p *planner) logNormal(median, sigma float64, max int64) int64 {
	v := int64(median * math.Exp(sigma*p.r.NormFloat64()))
	if v < 0 {
		v = 0
	}
	if v > max {
		v = max
	}
	return v
}

func newDir(name string) *node { return &node{name: name, kind: kindDir, taken: map[string]bool{}} }

// unique makes name unused in dir.
func unique(dir *node, name string) string {
	if !dir.taken[name] {
		return name
	}
	for i := 2; ; i++ {
		n := fmt.Sprintf("%s-%d", name, i)
		if ext := strings.IndexByte(name, '.'); ext > 0 {
			n = fmt.Sprintf("%s-%d%s", name[:ext], i, name[ext:])
		}
		if !dir.taken[n] {
			return n
		}
	}
}

func add(dir, child *node) *node {
	child.name = unique(dir, child.name)
	dir.taken[child.name] = true
	dir.children = append(dir.children, child)
	return child
}

func (p *planner) mkdir(dir *node, name string) *node { return add(dir, newDir(name)) }

// subdir returns the child directory name of dir, making it if needed.
func (p *planner) subdir(dir *node, path string) *node {
	for _, name := range strings.Split(path, "/") {
		var found *node
		for _, ch := range dir.children {
			if ch.name == name && ch.kind == kindDir {
				found = ch
				break
			}
		}
		if found == nil {
			found = p.mkdir(dir, name)
		}
		dir = found
	}
	return dir
}

// file adds a regular file; small ones may be hardlinked by later names.
func (p *planner) file(dir *node, name string, size int64, exec, zeros bool) *node {
	f := add(dir, &node{name: name, kind: kindFile, size: size, exec: exec, seed: p.contentSeed(),
		zeros: zeros && size >= 5*4096})
	if size <= 128<<10 {
		pool := &p.pool[b2i(exec)]
		if len(*pool) < 20_000 {
			*pool = append(*pool, f)
		} else {
			(*pool)[p.r.IntN(len(*pool))] = f
		}
	}
	return f
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (p *planner) symlink(dir *node, name, target string) *node {
	return add(dir, &node{name: name, kind: kindSymlink, target: target})
}

func (p *planner) hardlink(dir *node, name string, to *node) *node {
	return add(dir, &node{name: name, kind: kindHardlink, link: to, exec: to.exec})
}

// licence adds a licence text that is identical in every path that has it:
// the first copy is a file, the later ones hardlinks to it.
func (p *planner) licence(dir *node) {
	i := p.r.IntN(len(p.licences))
	name := []string{"COPYING", "LICENSE", "LICENSE.txt", "COPYING.LIB"}[i%4]
	if f := p.licences[i]; f != nil {
		p.hardlink(dir, name, f)
		return
	}
	p.licences[i] = add(dir, &node{name: name, kind: kindFile, size: int64(7000 + 3000*i),
		seed: splitmix(p.seed ^ uint64(i)<<40)})
}

// otherPath picks an earlier store path, favouring the first ones (the
// libraries every package links against), and records the reference.
func (p *planner) otherPath(self int) int {
	if self == 0 {
		return 0
	}
	u := p.r.Float64()
	j := int(float64(self) * u * u)
	p.c.paths[self].refs[j] = true
	return j
}

func (p *planner) storeFile(j int, rest string) string {
	return "/nix/store/" + p.c.paths[j].base + "/" + rest
}

// leaf adds one non-directory entry in the given style.
func (p *planner) leaf(sp int, dir *node, st style) {
	u := p.r.Float64()
	switch {
	case u < st.pSymlink:
		name := p.word(1, 4) + st.exts[p.r.IntN(len(st.exts))]
		var sib *node
		for k := 0; k < 3 && len(dir.children) > 0; k++ {
			if c := dir.children[p.r.IntN(len(dir.children))]; c.kind == kindFile {
				sib = c
				break
			}
		}
		if sib != nil && p.r.IntN(2) == 0 {
			p.symlink(dir, name, sib.name)
			return
		}
		j := p.otherPath(sp)
		p.symlink(dir, name, p.storeFile(j, "share/"+p.word(2, 3)+"/"+p.word(1, 4)))
	case u < st.pSymlink+st.pDup && len(p.pool[0]) > 0:
		pool := p.pool[0]
		if p.r.Float64() < st.pExec*3 && len(p.pool[1]) > 0 {
			pool = p.pool[1]
		}
		to := pool[p.r.IntN(len(pool))]
		name := to.name
		if p.r.IntN(2) == 0 {
			name = p.word(1, 4) + st.exts[p.r.IntN(len(st.exts))]
		}
		p.hardlink(dir, name, to)
	default:
		size := p.logNormal(st.median, st.sigma, 8<<20)
		if p.r.IntN(50) == 0 {
			size = 0
		}
		exec := p.r.Float64() < st.pExec
		p.file(dir, p.word(1, 4)+st.exts[p.r.IntN(len(st.exts))], size, exec, exec)
	}
}

// fill adds budget entries below dir, nesting subdirectories.
func (p *planner) fill(sp int, dir *node, budget, depth int, st style) {
	fanout := 4 + p.r.IntN(st.fanoutMax)
	for budget > 0 {
		if depth < st.maxDepth && budget >= 4 && (len(dir.children) >= fanout || p.r.Float64() < st.pDir) {
			sub := p.mkdir(dir, p.word(1, 3))
			budget--
			u := p.r.Float64()
			take := int(float64(budget) * u * u)
			p.fill(sp, sub, take, depth+1, st)
			budget -= take
			continue
		}
		p.leaf(sp, dir, st)
		budget--
	}
}

// plan draws the whole corpus.
func plan(seed uint64, scale float64) *corpus {
	p := newPlanner(seed, scale)
	n := p.scaled(basePaths, 12)
	for i := 0; i < n; i++ {
		p.c.paths = append(p.c.paths, &storePath{refs: map[int]bool{}})
	}
	// Where the special paths sit in the dependency order.
	special := map[int]string{
		n / 5:   "man-pages",
		n / 4:   "linux-firmware",
		n / 3:   "linux-modules",
		n / 2:   "deep",
		n/2 + 1: "odd-names",
		n - 3:   "etc",
		n - 2:   "units",
		n - 1:   "system",
	}
	for i := range p.c.paths {
		name := special[i]
		if name == "" {
			name = p.pkgName()
		} else {
			name = p.specialName(name)
		}
		p.c.paths[i].base = p.storeHash(i) + "-" + name
	}

	// Entries left for the ordinary paths once the special ones are planned.
	generic := float64(baseEntries)*scale - float64(p.specialEntries())
	weights := make([]float64, n)
	var sum float64
	for i := range weights {
		if _, ok := special[i]; ok {
			continue
		}
		// Heavy tail: most paths are small, a few hold thousands of names.
		w := math.Pow(1-p.r.Float64(), -1/1.1)
		if w > 400 {
			w = 400
		}
		if p.r.IntN(8) == 0 {
			w = 0 // single-file paths
		}
		weights[i] = w
		sum += w
	}
	for i := range p.c.paths {
		if kind, ok := special[i]; ok {
			p.planSpecial(i, kind)
			continue
		}
		budget := int(math.Round(generic * weights[i] / sum))
		p.planGeneric(i, budget)
		for k := p.r.IntN(9); k > 0 && i > 0; k-- {
			p.otherPath(i) // libraries it links against, interpreters, data
		}
		if p.r.Float64() < 0.3 {
			p.c.paths[i].refs[i] = true // e.g. an RPATH into the path itself
		}
	}
	p.planTail()
	p.topReferences()
	return p.c
}

var pkgWords = strings.Fields(`lib util tools core data bin common utils daemon server client
gtk qt python3 perl5 ruby glib font icons theme x11 xorg mesa wayland systemd dbus`)

func (p *planner) pkgName() string {
	name := p.word(2, 4)
	if p.r.IntN(3) == 0 {
		name = pkgWords[p.r.IntN(len(pkgWords))] + "-" + name
	}
	name += "-" + p.version()
	switch p.r.IntN(8) {
	case 0:
		name += "-bin"
	case 1:
		name += "-lib"
	case 2:
		name += "-man"
	}
	return name
}

func (p *planner) specialName(kind string) string {
	switch kind {
	case "man-pages":
		return "man-pages-6.9.1"
	case "linux-firmware":
		return "linux-firmware-20240610-zstd"
	case "linux-modules":
		return "linux-6.6.30-modules"
	case "deep":
		return "node-deps-1.0.0"
	case "odd-names":
		return "odd-names-1.0"
	case "etc":
		return "etc"
	case "units":
		return "system-units"
	default:
		return "nixos-system-nixos-24.05.20240601.abcdef0"
	}
}

// Planned sizes of the special paths, in entries.
func (p *planner) specialEntries() int {
	s := p.scale
	return p.scaled(baseMan3, 50) + p.scaled(600, 10) + // man-pages
		p.scaled(baseFirmware, 50) + p.scaled(1200, 10) + // firmware
		p.scaled(baseModules, 50) + 10 + // modules
		31*3 + 12 + // deep, odd names
		int(1500*s) + int(700*s) + 40
}

func (p *planner) planSpecial(i int, kind string) {
	sp := p.c.paths[i]
	sp.root = newDir(sp.base)
	root := sp.root
	switch kind {
	case "man-pages":
		man3 := p.subdir(root, "share/man/man3")
		p.flat(man3, p.scaled(baseMan3, 50), ".3.gz", 1300, 0.8, 0.15)
		for k, left := 0, p.scaled(600, 10); left > 0; k++ {
			d := p.subdir(root, fmt.Sprintf("share/man/man%d", []int{1, 2, 4, 5, 7, 8}[k%6]))
			take := left/2 + 1
			p.flat(d, take, ".gz", 2500, 0.9, 0.05)
			left -= take
		}
		p.licence(p.subdir(root, "share/doc/man-pages"))
	case "linux-firmware":
		fw := p.subdir(root, "lib/firmware")
		p.flat(fw, p.scaled(baseFirmware, 50), ".bin.zst", 5000, 1.2, 0.03)
		p.fill(i, fw, p.scaled(1200, 10), 1, style{exts: []string{".bin.zst", ".fw.zst", ".ucode.zst", ".txt"},
			median: 12000, sigma: 1.3, pSymlink: 0.1, pDir: 0.05, fanoutMax: 40, maxDepth: 3})
	case "linux-modules":
		mods := p.subdir(root, "lib/modules/6.6.30/kernel-flat")
		p.flat(mods, p.scaled(baseModules, 50), ".ko.xz", 8000, 0.9, 0)
		top := p.subdir(root, "lib/modules/6.6.30")
		for _, f := range []string{"modules.dep", "modules.dep.bin", "modules.alias", "modules.alias.bin",
			"modules.symbols", "modules.symbols.bin", "modules.builtin", "modules.order", "modules.devname"} {
			p.file(top, f, p.logNormal(200_000, 0.8, 4<<20), false, false)
		}
		p.symlink(top, "source", "/build/linux-6.6.30/source/tree/does/not/exist/in/the/store/at/all")
	case "deep":
		d := p.subdir(root, "lib/node_modules")
		for level := 0; level < 30; level++ {
			d = p.mkdir(d, p.word(2, 4))
			p.file(d, "package.json", p.logNormal(900, 0.5, 1<<20), false, false)
			p.file(d, "index.js", p.logNormal(3000, 1, 1<<20), false, false)
			d = p.mkdir(d, "node_modules")
		}
		p.file(d, "README.md", 4000, false, false)
	case "odd-names":
		d := p.subdir(root, "share/odd names")
		for _, name := range []string{"with space.txt", "two  spaces", "trailing space ", "it's.txt",
			`say "hi".txt`, "naïve café.txt", "日本語のファイル.txt", "-leading-dash", "#not-a-comment",
			"semi;colon & amp", "back\\slash"} {
			p.file(d, name, p.logNormal(2000, 1, 1<<20), false, false)
		}
		p.symlink(d, "link with space", "with space.txt")
	case "etc":
		etc := p.subdir(root, "etc")
		p.fillLinks(i, etc, int(1500*p.scale), 4)
	case "units":
		d := p.subdir(root, "lib/systemd/system")
		for k := 0; k < int(700*p.scale); k++ {
			name := p.word(1, 4) + []string{".service", ".socket", ".target", ".timer", ".mount"}[p.r.IntN(5)]
			if p.r.IntN(2) == 0 {
				j := p.otherPath(i)
				p.symlink(d, name, p.storeFile(j, "lib/systemd/system/"+name))
			} else {
				p.file(d, name, p.logNormal(700, 0.6, 1<<20), false, false)
			}
		}
	case "system":
		for _, name := range []string{"activate", "dry-activate", "init", "bin/switch-to-configuration", "prepare-root"} {
			dir := root
			if strings.Contains(name, "/") {
				dir = p.subdir(root, "bin")
				name = name[4:]
			}
			p.file(dir, name, p.logNormal(8000, 0.8, 1<<20), true, false)
		}
		for _, name := range []string{"kernel", "initrd", "firmware", "kernel-modules", "etc", "sw", "systemd",
			"dtbs", "init-interface-version", "kernel-params", "nixos-version", "system", "extra-dependencies", "specialisation"} {
			switch name {
			case "init-interface-version", "kernel-params", "nixos-version", "system":
				p.file(root, name, 30, false, false)
			case "specialisation", "extra-dependencies":
				p.mkdir(root, name)
			default:
				j := p.otherPath(i)
				p.symlink(root, name, "/nix/store/"+p.c.paths[j].base)
			}
		}
	}
}

// flat fills one directory with n names: files of the given size, a share
// of them symlinks to other names in the same directory (as man3 has).
func (p *planner) flat(dir *node, n int, ext string, median, sigma, pSymlink float64) {
	start := len(dir.children)
	for k := 0; k < n; k++ {
		name := p.word(2, 6)
		if p.r.IntN(3) == 0 {
			name = strings.ToUpper(name[:1]) + name[1:] + "_" + p.word(1, 4)
		}
		if p.r.IntN(4) == 0 {
			name += "_" + p.word(2, 5)
		}
		if k > 10 && p.r.Float64() < pSymlink {
			to := dir.children[start+p.r.IntN(len(dir.children)-start)]
			if to.kind == kindFile {
				p.symlink(dir, name+ext, to.name)
				continue
			}
		}
		p.file(dir, name+ext, p.logNormal(median, sigma, 16<<20), false, false)
	}
}

// fillLinks builds an /etc-like tree: mostly long symlinks into other paths.
func (p *planner) fillLinks(sp int, dir *node, budget, depth int) {
	for budget > 0 {
		if depth > 0 && budget > 10 && p.r.IntN(8) == 0 {
			sub := p.mkdir(dir, p.word(1, 3)+".d")
			take := p.r.IntN(budget / 2)
			budget--
			p.fillLinks(sp, sub, take, depth-1)
			budget -= take
			continue
		}
		name := p.word(1, 4) + []string{".conf", "", ".rules", ".json", ".sh"}[p.r.IntN(5)]
		if p.r.IntN(6) == 0 {
			p.file(dir, name, p.logNormal(600, 1, 1<<20), false, false)
		} else {
			j := p.otherPath(sp)
			p.symlink(dir, name, p.storeFile(j, "etc/"+name))
		}
		budget--
	}
}

// planGeneric plans an ordinary package with about budget names.
func (p *planner) planGeneric(i, budget int) {
	sp := p.c.paths[i]
	if budget <= 1 {
		// A single-file path: a script, a unit, a config file.
		exec := p.r.IntN(2) == 0
		sp.root = &node{name: sp.base, kind: kindFile, size: p.logNormal(1500, 1.2, 1<<20), exec: exec,
			seed: p.contentSeed()}
		return
	}
	sp.root = newDir(sp.base)
	root := sp.root
	budget-- // the root
	pname := strings.SplitN(sp.base[33:], "-", 2)[0]
	switch u := p.r.Float64(); {
	case u < 0.40: // a program
		bin := p.subdir(root, "bin")
		nb := clamp(budget/10, 1, 60)
		var progs []*node
		for k := 0; k < nb; k++ {
			if k > 0 && p.r.IntN(8) == 0 {
				p.symlink(bin, p.word(1, 3), progs[p.r.IntN(len(progs))].name)
				continue
			}
			progs = append(progs, p.file(bin, p.word(1, 3), p.logNormal(25_000, 1.3, 64<<20), true, true))
		}
		p.bigDirs, p.bigRefs = append(p.bigDirs, bin), append(p.bigRefs, i)
		budget -= nb + 1
		if budget > 4 {
			man := p.subdir(root, "share/man/man1")
			budget -= 3
			for k := 0; k < nb && budget > 0; k++ {
				p.file(man, p.word(1, 3)+".1.gz", p.logNormal(2500, 0.9, 1<<20), false, false)
				budget--
			}
		}
	case u < 0.75: // a library
		lib := p.subdir(root, "lib")
		nl := clamp(budget/20, 1, 30)
		for k := 0; k < nl; k++ {
			stem := "lib" + p.word(1, 3)
			major := p.r.IntN(10)
			real := fmt.Sprintf("%s.so.%d.%d.%d", stem, major, p.r.IntN(30), p.r.IntN(10))
			p.file(lib, real, p.logNormal(60_000, 1.3, 64<<20), true, true)
			p.symlink(lib, fmt.Sprintf("%s.so.%d", stem, major), real)
			p.symlink(lib, stem+".so", fmt.Sprintf("%s.so.%d", stem, major))
		}
		p.bigDirs, p.bigRefs = append(p.bigDirs, lib), append(p.bigRefs, i)
		budget -= 3*nl + 1
		if nlang := clamp(budget/8, 0, 60); nlang > 0 {
			loc := p.subdir(root, "share/locale")
			budget -= 2
			for k := 0; k < nlang; k++ {
				d := p.subdir(loc, p.word(1, 1)+[]string{"", "_" + strings.ToUpper(p.word(1, 1))}[p.r.IntN(2)]+"/LC_MESSAGES")
				p.file(d, pname+".mo", p.logNormal(20_000, 0.8, 1<<20), false, false)
			}
			budget -= 3 * nlang
		}
		if budget > 6 {
			d := p.subdir(root, "lib/"+pname)
			budget--
			take := budget / 2
			p.fill(i, d, take, 1, stylePlugins)
			budget -= take
		}
	case u < 0.85: // python
		d := p.subdir(root, "lib/python3.12/site-packages/"+pname)
		budget -= 4
		p.fill(i, d, budget, 3, stylePython)
		budget = 0
	}
	if budget > 3 {
		doc := p.subdir(root, "share/doc/"+pname)
		p.licence(doc)
		p.file(doc, "README", p.logNormal(4000, 1, 1<<20), false, false)
		budget -= 3
	}
	if budget > 0 {
		d := p.subdir(root, "share/"+pname)
		p.fill(i, d, budget-1, 2, styleData)
	}
}

func clamp(v, lo, hi int) int {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}

// planTail adds the long tail of large files (compilers' libraries, kernel
// images, browsers) so that the corpus reaches its byte budget.
func (p *planner) planTail() {
	have := p.c.count().bytes
	want := int64(float64(baseBytes) * p.scale)
	rest := want - have
	if rest <= 0 || len(p.bigDirs) == 0 {
		return
	}
	k := p.scaled(40, 2)
	w := make([]float64, k)
	var sum float64
	for i := range w {
		w[i] = math.Pow(float64(i+1), -1.5)
		sum += w[i]
	}
	for i := range w {
		size := int64(float64(rest) * w[i] / sum)
		if size > maxTailFile {
			size = maxTailFile
		}
		d := p.r.IntN(len(p.bigDirs))
		p.file(p.bigDirs[d], "lib"+p.word(2, 4)+"-big.so."+p.version(), size, true, true)
	}
}

// topReferences makes the last path refer to every path that nothing else
// refers to, so that its closure is the whole corpus.
func (p *planner) topReferences() {
	last := len(p.c.paths) - 1
	referred := make([]bool, len(p.c.paths))
	for i, sp := range p.c.paths {
		for j := range sp.refs {
			if j != i {
				referred[j] = true
			}
		}
	}
	for j := 0; j < last; j++ {
		if !referred[j] {
			p.c.paths[last].refs[j] = true
		}
	}
}

// sortedRefs lists the references of a path as store paths, sorted.
func (c *corpus) sortedRefs(i int) []string {
	var out []string
	for j := range c.paths[i].refs {
		out = append(out, "/nix/store/"+c.paths[j].base)
	}
	sort.Strings(out)
	return out
}
