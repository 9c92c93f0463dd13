package closure

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Store paths for hand-written graphs.
var (
	pA   = "/nix/store/" + strings.Repeat("a", 32) + "-a"
	pB   = "/nix/store/" + strings.Repeat("b", 32) + "-b-1.0"
	pC   = "/nix/store/" + strings.Repeat("c", 32) + "-c"
	pDrv = "/nix/store/" + strings.Repeat("d", 32) + "-a.drv"
	pOut = "/nix/store/" + strings.Repeat("0", 32) + "-missing"
)

// The SHA-256 of the empty string in the three notations Nix accepts
// (base16 from sha256sum, base64 from openssl, nix-base32 from nix-hash
// --to-base32).
const (
	emptyHex    = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	emptySRI    = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
	emptyBase32 = "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
)

// lines joins lines and ends the last one with a newline, as Nix does.
func lines(l ...string) string { return strings.Join(l, "\n") + "\n" }

// textGood is a closed text graph: a -> b -> c, c refers to itself, and b
// is listed twice the same way.
var textGood = lines(
	pA, "", "1", pB,
	pB, pDrv, "2", pC, pC,
	pC, "", "1", pC,
	pB, "", "1", pC,
)

var textGoodPaths = []Path{
	{Path: pA, References: []string{pB}},
	{Path: pB, References: []string{pC}},
	{Path: pC, References: []string{pC}},
}

func jsonEntry(path, hash string, size string, refs ...string) string {
	var fields []string
	fields = append(fields, `"path": "`+path+`"`)
	if hash != "" {
		fields = append(fields, `"narHash": "`+hash+`"`)
	}
	if size != "" {
		fields = append(fields, `"narSize": `+size)
	}
	quoted := make([]string, len(refs))
	for i, r := range refs {
		quoted[i] = `"` + r + `"`
	}
	fields = append(fields, `"references": [`+strings.Join(quoted, ", ")+`]`)
	return "{" + strings.Join(fields, ", ") + "}"
}

// jsonGood looks like a structured-attrs file: derivation attributes that
// are not graphs (strings, lists of strings, objects, a list of objects
// without "path"), two graph lists, fields newer Nix adds, and the three
// hash notations.
var jsonGood = `{
  "name": "image",
  "args": ["-c", "true"],
  "outputs": {"out": "` + pOut + `"},
  "srcs": [{"name": "x"}],
  "exportReferencesGraph": {"closure": ["` + pA + `"]},
  "closure": [
    ` + jsonEntry(pA, emptyHex, "120", pB) + `,
    {"path": "` + pB + `", "narHash": "` + emptySRI + `", "narSize": 8, "references": ["` + pC + `"],
     "closureSize": 99, "valid": true, "deriver": "` + pDrv + `", "registrationTime": 1, "signatures": []}
  ],
  "other": [
    ` + jsonEntry(pC, emptyBase32, "16", pC) + `
  ]
}`

var jsonGoodPaths = []Path{
	{Path: pA, NarHash: emptyBase32, NarSize: 120, References: []string{pB}},
	{Path: pB, NarHash: emptyBase32, NarSize: 8, References: []string{pC}},
	{Path: pC, NarHash: emptyBase32, NarSize: 16, References: []string{pC}},
}

func TestParseGood(t *testing.T) {
	gnu := "/gnu/store/" + strings.Repeat("a", 32) + "-a"
	tests := []struct {
		name  string
		input string
		opts  Options
		want  []Path
	}{
		{"text", textGood, Options{}, textGoodPaths},
		{"text without final newline", strings.TrimSuffix(textGood, "\n"), Options{}, textGoodPaths},
		{"text with another store dir", lines(gnu, "", "0"), Options{StoreDir: "/gnu/store"}, []Path{{Path: gnu, References: []string{}}}},
		{"json", jsonGood, Options{}, jsonGoodPaths},
		{"json with attrs key", jsonGood, Options{AttrsKey: "other"}, jsonGoodPaths[2:]},
		{"json without hashes", `{"g": [` + jsonEntry(pA, "", "") + `]}`, Options{}, []Path{{Path: pA, References: []string{}}}},
		{"json with null hash and size", `{"g": [{"path": "` + pA + `", "narHash": null, "narSize": null, "references": []}]}`, Options{}, []Path{{Path: pA, References: []string{}}}},
		{"json narSize 0 is unknown", `{"g": [` + jsonEntry(pA, emptyHex, "0") + `]}`, Options{}, []Path{{Path: pA, NarHash: emptyBase32, References: []string{}}}},
		{"json with leading blanks", "\n\t " + `{"g": [` + jsonEntry(pA, "", "") + `]}`, Options{}, []Path{{Path: pA, References: []string{}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tt.input), "g", tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// badCase is an input that must be rejected with a message containing want.
type badCase struct {
	name  string
	input string
	opts  Options
	want  string
}

var textBad = []badCase{
	{"empty file", "", Options{}, "g: no store paths: is this an exportReferencesGraph file?"},
	{"only blank lines", "\n\n  \n", Options{}, "g: no store paths"},
	{"truncated before deriver", lines(pA), Options{}, "g:2: truncated record for " + pA + ": the deriver line is missing"},
	{"truncated before count", lines(pA, ""), Options{}, "g:3: truncated record for " + pA + ": the reference count is missing"},
	{"truncated after a full record", lines(pC, "", "0", pA), Options{}, "g:5: truncated record for " + pA},
	{"non-numeric count", lines(pA, "", "one"), Options{}, `g:3: reference count "one" of ` + pA + " is not a number"},
	{"count with blanks", lines(pA, "", " 1", pC), Options{}, `g:3: reference count " 1" of ` + pA + " is not a number"},
	{"empty count", lines(pA, "", ""), Options{}, `g:3: reference count "" of ` + pA + " is not a number"},
	{"negative count", lines(pA, "", "-1"), Options{}, "g:3: reference count -1 of " + pA + " is negative"},
	{"huge count", lines(pA, "", "99999999999999999999"), Options{}, `g:3: reference count "99999999999999999999" of ` + pA + " is out of range"},
	{"count beyond the end", lines(pA, "", "2", pB), Options{}, "g:3: " + pA + " has 2 references but only 1 line follows"},
	{"count beyond the end, no lines left", lines(pA, "", "3"), Options{}, "g:3: " + pA + " has 3 references but only 0 lines follow"},
	{"path outside the store", lines("/tmp/x", "", "0"), Options{}, `g:1: invalid store path "/tmp/x": not under the store directory /nix/store`},
	{"relative path", lines("nix/store/"+strings.Repeat("a", 32)+"-a", "", "0"), Options{}, "not under the store directory"},
	{"store path of another store dir", lines(pA, "", "0"), Options{StoreDir: "/gnu/store"}, "g:1: invalid store path \"" + pA + "\": not under the store directory /gnu/store"},
	{"dot-dot", lines("/nix/store/../etc/passwd", "", "0"), Options{}, "not directly under the store directory /nix/store"},
	{"double slash", lines("/nix/store//"+strings.Repeat("a", 32)+"-a", "", "0"), Options{}, "not directly under the store directory"},
	{"path below a store path", lines(pA+"/bin", "", "0"), Options{}, "not directly under the store directory"},
	{"trailing slash", lines(pA+"/", "", "0"), Options{}, "not directly under the store directory"},
	{"store dir itself", lines("/nix/store/", "", "0"), Options{}, "expected /nix/store/<32-character hash>-<name>"},
	{"short hash", lines("/nix/store/abc-a", "", "0"), Options{}, "expected /nix/store/<32-character hash>-<name>"},
	{"no name", lines("/nix/store/"+strings.Repeat("a", 32)+"-", "", "0"), Options{}, "expected /nix/store/<32-character hash>-<name>"},
	{"no dash", lines("/nix/store/"+strings.Repeat("a", 32)+"_a", "", "0"), Options{}, "expected /nix/store/<32-character hash>-<name>"},
	{"hash outside nix-base32", lines("/nix/store/"+strings.Repeat("e", 32)+"-a", "", "0"), Options{}, `g:1: invalid store path "/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-a": hash part: decode base32: character 'e' not in Nix alphabet`},
	{"space in name", lines("/nix/store/"+strings.Repeat("a", 32)+"-a b", "", "0"), Options{}, `invalid store path "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a b": name "a b" must not start with a dot or contain other characters`},
	{"name starting with a dot", lines("/nix/store/"+strings.Repeat("a", 32)+"-.a", "", "0"), Options{}, `name ".a" must not start with a dot`},
	{"name too long", lines("/nix/store/"+strings.Repeat("a", 32)+"-"+strings.Repeat("n", 212), "", "0"), Options{}, "name longer than 211 characters"},
	{"carriage returns", "" + pA + "\r\n\r\n0\r\n", Options{}, `g:1: invalid store path "` + pA + `\r": name "a\r" must not`},
	{"bad reference", lines(pA, "", "1", "/tmp/x"), Options{}, `g:4: reference of ` + pA + `: invalid store path "/tmp/x"`},
	{"bad deriver", lines(pA, "/tmp/x.drv", "0"), Options{}, `g:2: deriver of ` + pA + `: "/tmp/x.drv" is neither empty nor a .drv store path`},
	{"deriver not a drv", lines(pA, pB, "0"), Options{}, `g:2: deriver of ` + pA + `: "` + pB + `" is neither empty nor a .drv store path`},
	{"conflicting duplicate", lines(pA, "", "0", pB, "", "0", pA, "", "1", pB), Options{}, "g:7: " + pA + " is listed again with different references than at g:1"},
}

var jsonBad = []badCase{
	{"invalid JSON", `{"closure": [`, Options{}, "g:1: invalid JSON: unexpected EOF"},
	{"invalid JSON on a later line", "{\n\"a\": 1,\n\"b\": tru\n}", Options{}, "g:3: invalid JSON"},
	{"trailing garbage", `{"a": 1} x`, Options{}, "g:1: invalid JSON"},
	{"two objects", `{"a": 1} {}`, Options{}, "more data after the top-level object"},
	{"not an object", `[` + jsonEntry(pA, "", "") + `]`, Options{}, "g:1: the top-level JSON value is not an object"},
	{"no graph lists", `{"name": "x", "args": ["a"], "outputs": {"out": "` + pOut + `"}}`, Options{}, "g: no store paths: is this an exportReferencesGraph file?"},
	{"empty object", `{}`, Options{}, "g: no store paths"},
	{"missing path", "{\"g\": [\n" + jsonEntry(pA, "", "") + ",\n" + `{"references": []}` + "]}", Options{}, `g:3: g[1]: missing field "path"`},
	{"missing references", `{"g": [{"path": "` + pA + `"}]}`, Options{}, `g:1: g[0]: ` + pA + `: missing field "references"`},
	{"null references", `{"g": [{"path": "` + pA + `", "references": null}]}`, Options{}, `missing field "references"`},
	{"path of the wrong type", `{"g": [{"path": 5, "references": []}]}`, Options{}, `g[0]: field "path": json: cannot unmarshal number`},
	{"references of the wrong type", `{"g": [{"path": "` + pA + `", "references": "` + pB + `"}]}`, Options{}, `field "references": json: cannot unmarshal string`},
	{"negative narSize", `{"g": [` + jsonEntry(pA, emptyBase32, "-5") + `]}`, Options{}, "g:1: g[0]: " + pA + ": narSize -5 is negative"},
	{"fractional narSize", `{"g": [` + jsonEntry(pA, emptyBase32, "1.5") + `]}`, Options{}, "narSize 1.5 is not a whole number of bytes"},
	{"narSize as a string", `{"g": [` + jsonEntry(pA, emptyBase32, `"120"`) + `]}`, Options{}, `narSize "120" is not a whole number of bytes`},
	{"narSize too large", `{"g": [` + jsonEntry(pA, emptyBase32, "18446744073709551616") + `]}`, Options{}, "is not a whole number of bytes"},
	{"narHash without narSize", `{"g": [` + jsonEntry(pA, emptyBase32, "") + `]}`, Options{}, `has "narHash" but no "narSize"`},
	{"narSize without narHash", `{"g": [` + jsonEntry(pA, "", "120") + `]}`, Options{}, `has "narSize" but no "narHash"`},
	{"narHash of another algorithm", `{"g": [` + jsonEntry(pA, "md5:d41d8cd98f00b204e9800998ecf8427e", "120") + `]}`, Options{}, `narHash "md5:d41d8cd98f00b204e9800998ecf8427e": want sha256:<nix-base32>, sha256:<hex> or sha256-<base64>`},
	{"narHash without algorithm", `{"g": [` + jsonEntry(pA, strings.TrimPrefix(emptyHex, "sha256:"), "120") + `]}`, Options{}, "want sha256:<nix-base32>"},
	{"narHash too short", `{"g": [` + jsonEntry(pA, "sha256:abc", "120") + `]}`, Options{}, `narHash "sha256:abc": unknown encoding`},
	{"narHash outside nix-base32", `{"g": [` + jsonEntry(pA, "sha256:"+strings.Repeat("e", 52), "120") + `]}`, Options{}, `narHash "sha256:` + strings.Repeat("e", 52) + `"`},
	{"narHash with base32 padding bits", `{"g": [` + jsonEntry(pA, "sha256:z"+strings.Repeat("0", 51), "120") + `]}`, Options{}, "non-zero padding"},
	{"SRI narHash of 33 bytes", `{"g": [` + jsonEntry(pA, "sha256-"+strings.Repeat("A", 44), "120") + `]}`, Options{}, "33 bytes, want 32"},
	{"SRI narHash of 31 bytes", `{"g": [` + jsonEntry(pA, "sha256-"+strings.Repeat("A", 40)+"AA==", "120") + `]}`, Options{}, "31 bytes, want 32"},
	{"narHash of the wrong type", `{"g": [{"path": "` + pA + `", "narHash": 1, "narSize": 1, "references": []}]}`, Options{}, `field "narHash": json: cannot unmarshal number`},
	{"bad path", `{"g": [` + jsonEntry("/tmp/x", "", "") + `]}`, Options{}, `g:1: g[0]: invalid store path "/tmp/x": not under the store directory /nix/store`},
	{"bad reference", `{"g": [` + jsonEntry(pA, "", "", "/nix/store/x") + `]}`, Options{}, pA + `: reference: invalid store path "/nix/store/x"`},
	{"attrs key missing", `{"g": [` + jsonEntry(pA, "", "") + `]}`, Options{AttrsKey: "closure"}, `g: no top-level key "closure"`},
	{"attrs key not a graph", `{"g": [` + jsonEntry(pA, "", "") + `], "name": "x"}`, Options{AttrsKey: "name"}, `g:1: "name" is not a list of store path objects`},
	{"attrs key an empty list", `{"g": []}`, Options{AttrsKey: "g"}, `"g" is not a list of store path objects`},
	{"conflicting references", `{"g": [` + jsonEntry(pA, "", "") + `], "h": [` + jsonEntry(pA, "", "", pA) + `]}`, Options{}, pA + " is listed again with different references than at g:1"},
	{"conflicting hashes", `{"g": [` + jsonEntry(pA, emptyBase32, "8") + `], "h": [` + jsonEntry(pA, emptyBase32, "16") + `]}`, Options{}, pA + " is listed again with a different narHash/narSize than at g:1"},
}

func TestParseBad(t *testing.T) {
	for _, set := range [][]badCase{textBad, jsonBad} {
		for _, tt := range set {
			t.Run(tt.name, func(t *testing.T) {
				paths, err := Parse(strings.NewReader(tt.input), "g", tt.opts)
				if err == nil {
					t.Fatalf("no error; got %+v", paths)
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("error %q\ndoes not contain %q", err, tt.want)
				}
			})
		}
	}
}

func writeGraph(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	text := writeGraph(t, "text", textGood)
	js := writeGraph(t, "attrs.json", jsonGood)
	// Text and JSON graphs of the same closure union into the paths of
	// the JSON one, hashes included.
	c, err := Load([]string{text, js}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Paths, jsonGoodPaths) || c.StoreDir != DefaultStoreDir {
		t.Errorf("got %+v", c)
	}
	if got, want := c.PathNames(), []string{pA, pB, pC}; !reflect.DeepEqual(got, want) {
		t.Errorf("PathNames() = %q, want %q", got, want)
	}
	if got := c.NarBytes(); got != 144 {
		t.Errorf("NarBytes() = %d, want 144", got)
	}
}

func TestLoadBad(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		opts  Options
		want  string
	}{
		{"reference missing from the closure", map[string]string{"g": lines(pA, "", "1", pB)}, Options{},
			"g:1: " + pA + " references " + pB + ", which is not in the closure"},
		{"reference missing from a JSON closure", map[string]string{"g": "{\"g\": [\n" + jsonEntry(pA, "", "", pC) + "]}"}, Options{},
			"g:2: " + pA + " references " + pC + ", which is not in the closure"},
		{"conflict between files", map[string]string{"g": lines(pA, "", "0"), "h": lines(pA, "", "1", pA)}, Options{},
			"h:1: " + pA + " is listed again with different references than at"},
		{"hash conflict between files", map[string]string{
			"g": `{"g": [` + jsonEntry(pA, emptyBase32, "8") + `]}`,
			"h": `{"g": [` + jsonEntry(pA, "sha256:"+strings.Repeat("1", 52), "8") + `]}`}, Options{},
			"is listed again with a different narHash/narSize"},
		{"bad store dir", map[string]string{"g": textGood}, Options{StoreDir: "nix/store"}, `store directory "nix/store" must be an absolute, clean path`},
		{"store dir with a trailing slash", map[string]string{"g": textGood}, Options{StoreDir: "/nix/store/"}, "must be an absolute, clean path"},
		{"one empty file among good ones", map[string]string{"g": textGood, "h": ""}, Options{}, "h: no store paths"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var files []string
			for _, name := range []string{"g", "h"} {
				if content, ok := tt.files[name]; ok {
					p := filepath.Join(dir, name)
					if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
						t.Fatal(err)
					}
					files = append(files, p)
				}
			}
			c, err := Load(files, tt.opts)
			if err == nil {
				t.Fatalf("no error; got %+v", c)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\ndoes not contain %q", err, tt.want)
			}
		})
	}
}

func TestLoadFileErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		file string
		want string
	}{
		{"missing graph file", filepath.Join(dir, "nope"), "reading graph: open " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{"graph is a directory", dir, "reading graph: read " + dir + ": is a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load([]string{tt.file}, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := Load(nil, Options{}); err == nil || err.Error() != "no graph files given" {
		t.Errorf("Load(nil): %v", err)
	}
}
