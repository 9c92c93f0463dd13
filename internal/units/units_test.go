package units

import "testing"

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"4096", 4096, true}, {"16MiB", 16 << 20, true}, {"16M", 16 << 20, true},
		{"1GiB", 1 << 30, true}, {"512KiB", 512 << 10, true}, {"1KB", 1000, true}, {"2MB", 2000000, true},
		{" 3 MiB ", 3 << 20, true}, {"1TiB", 1 << 40, true},
		{"", 0, false}, {"-1", 0, false}, {"1.5MiB", 0, false}, {"16 megabytes", 0, false},
		{"99999999999999999999", 0, false}, {"9999999999T", 0, false},
	} {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestBytes(t *testing.T) {
	for in, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.00 KiB", 1536: "1.50 KiB", 5 << 30: "5.00 GiB"} {
		if got := Bytes(in); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", in, got, want)
		}
	}
}
