package debugfsgen

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// awkward are arguments that a careless quoting would break: blanks,
// quotes in every position, what debugfs reads as a comment, a shell
// escape or an inode number, and bytes outside ASCII.
var awkward = []string{
	"", "plain", "with space", " leading", "trailing ", "tab\there", "\t", " ",
	`"`, `""`, `"""`, `dq"uote`, `"quoted"`, `x" rm y`, `a" "b`, `a"" b`, `ends"`,
	"#hash", "!bang", "  !bang", "<12>", "<0x1f>", "< 7>", `back\slash`, "semi;colon",
	"$(echo pwned)", "`cmd`", "'single'", "*", "?", "\x01ctrl", "\x7f", "\xff\xfe",
	"vt\vff\f", "ünïcødé ☃", "/abs/path", "./rel", "-x", "--",
	strings.Repeat(`"`, 255), strings.Repeat("n", 255),
}

func TestQuote(t *testing.T) {
	for _, s := range awkward {
		q, err := Quote(s)
		if err != nil {
			t.Errorf("Quote(%q): %v", s, err)
			continue
		}
		got, err := Split("cmd " + q + " next")
		if err != nil {
			t.Errorf("Quote(%q) = %q, which does not split: %v", s, q, err)
			continue
		}
		if want := []string{"cmd", s, "next"}; !reflect.DeepEqual(got, want) {
			t.Errorf("Quote(%q) = %q splits into %q, want %q", s, q, got, want)
		}
	}
	for _, s := range []string{"new\nline", "cr\rhere", "nul\x00byte", "\n", "\r", "\x00"} {
		if q, err := Quote(s); !errors.Is(err, ErrUnquotable) {
			t.Errorf("Quote(%q) = %q, %v; want ErrUnquotable", s, q, err)
		}
	}
}

// TestSplit pins the model of ss_parse to what lib/ss/parse.c does with
// lines that the generator never writes but a model must get right.
func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		line string
		want []string
		err  bool
	}{
		{"", nil, false},
		{"   \t ", nil, false},
		{"a b", []string{"a", "b"}, false},
		{"a\t\tb ", []string{"a", "b"}, false},
		{`a"b c"d`, []string{"ab cd"}, false},
		{`"" x`, []string{"", "x"}, false},
		{`"a""b"`, []string{`a"b`}, false},
		{`a""b`, []string{"ab"}, false},
		{`"a" "b"`, []string{"a", "b"}, false},
		{`"unbalanced`, nil, true},
		{`a"`, nil, true},
		{`"a"""`, []string{`a"`}, false},
		{`"a""`, nil, true},
	} {
		got, err := Split(tc.line)
		if (err != nil) != tc.err || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Split(%q) = %q, %v; want %q (error %v)", tc.line, got, err, tc.want, tc.err)
		}
	}
}

// FuzzQuote: any string either is refused (it holds a byte that ends a
// debugfs line or C string) or comes back from the splitter as exactly one
// argument, byte for byte, wherever it sits on a line.
func FuzzQuote(f *testing.F) {
	for _, s := range awkward {
		f.Add(s)
	}
	f.Add("new\nline")
	f.Add("nul\x00")
	f.Fuzz(func(t *testing.T, s string) {
		q, err := Quote(s)
		if strings.ContainsAny(s, "\n\r\x00") {
			if !errors.Is(err, ErrUnquotable) {
				t.Fatalf("Quote(%q) = %q, %v; want ErrUnquotable", s, q, err)
			}
			if !strings.Contains(err.Error(), "cannot be passed to debugfs") {
				t.Fatalf("unclear error: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Quote(%q): %v", s, err)
		}
		if strings.ContainsAny(q, "\n\r\x00") {
			t.Fatalf("Quote(%q) = %q holds a line end", s, q)
		}
		for _, tc := range []struct {
			line string
			want []string
		}{
			{"cmd " + q, []string{"cmd", s}},
			{"cmd " + q + " " + q, []string{"cmd", s, s}},
			{"cmd\t" + q + "\tlast", []string{"cmd", s, "last"}},
		} {
			got, err := Split(tc.line)
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("line %q splits into %q (%v), want %q", tc.line, got, err, tc.want)
			}
		}
	})
}
