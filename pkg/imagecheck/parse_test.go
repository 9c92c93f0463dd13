package imagecheck

import (
	"bufio"
	"reflect"
	"strings"
	"testing"
)

func TestParseLsP(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []dirent
		wantErr string
	}{
		{
			name: "directory, file, symlink",
			in:   "/2/040755/0/0/.//\n/2/040755/0/0/..//\n/12/100444/0/30000/a b/5/\n/13/120777/7/8/l/11/\n\n",
			want: []dirent{
				{Ino: 2, Mode: 0o40755, Name: "."},
				{Ino: 2, Mode: 0o40755, Name: ".."},
				{Ino: 12, Mode: 0o100444, GID: 30000, Name: "a b", Size: 5},
				{Ino: 13, Mode: 0o120777, UID: 7, GID: 8, Name: "l", Size: 11},
			},
		},
		{
			name: "names with newlines and forged lines",
			in:   "/14/100444/0/0/new\nline/3/\n/15/100444/0/0/\ndebugfs: ls -p <2>\n/1/\n/16/040555/0/0/\t\"q\"//\n\n",
			want: []dirent{
				{Ino: 14, Mode: 0o100444, Name: "new\nline", Size: 3},
				{Ino: 15, Mode: 0o100444, Name: "\ndebugfs: ls -p <2>\n", Size: 1},
				{Ino: 16, Mode: 0o40555, Name: "\t\"q\""},
			},
		},
		{
			name: "empty slots",
			in:   "/0/000000/0/0//0/\n/0/000000/0/0//0/\n\n",
			want: []dirent{{}, {}},
		},
		{name: "empty listing", in: "\n", want: nil},
		{name: "no end", in: "/12/100444/0/0/a/5/\n", wantErr: "does not end with an empty line"},
		{name: "error message", in: "\n-p: Ext2 inode is not a directory \n", wantErr: "unexpected text after the listing"},
		{name: "error inside", in: "/12/100444/0/0/a/5/\nls: Inode checksum does not match\n\n", wantErr: "unexpected text in the listing"},
		{name: "truncated", in: "/12/100444/0/0/a", wantErr: "truncated"},
		{name: "bad inode", in: "/x/100444/0/0/a/5/\n\n", wantErr: "inode"},
		{name: "bad mode", in: "/12/100494/0/0/a/5/\n\n", wantErr: "mode"},
		{name: "negative uid", in: "/12/100444/-1/0/a/5/\n\n", wantErr: "uid"},
		{name: "bad size", in: "/12/100444/0/0/a/5x/\n\n", wantErr: "size"},
		{name: "directory with size", in: "/12/040755/0/0/d/4096/\n\n", wantErr: "directory without the empty size"},
		{name: "nameless entry", in: "/12/100444/0/0//5/\n\n", wantErr: "empty name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseLsP([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q (got %+v)", err, tc.wantErr, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

const statLarge = `Inode: 17   Type: symlink    Mode:  0777   Flags: 0x0
Generation: 0    Version: 0x00000000:00000000
User:     0   Group: 30000   Project:     0   Size: 25
File ACL: 0
Links: 1   Blockcount: 0
Fragment:  Address: 0    Number: 0    Size: 0
 ctime: 0x00000001:00000000 -- Thu Jan  1 00:00:01 1970
 atime: 0x00000002:00000004 -- Thu Jan  1 00:00:02 1970
 mtime: 0xffffffff:00000001 -- Thu Jan  1 00:00:01 1970
crtime: 0x80000000:00000003 -- Thu Jan  1 00:00:01 1970
Size of extra inode fields: 32
Inode checksum: 0x239b6e54
Fast link dest: "t"r
Links: 9
crtime: 0x5 "
`

const statSmall = `Inode: 12   Type: regular    Mode:  4755   Flags: 0x80000
Generation: 0    Version: 0x00000000
User:  1000   Group:   100   Size: 5
File ACL: 0
Links: 2   Blockcount: 8
Fragment:  Address: 0    Number: 0    Size: 0
ctime: 0x00000001 -- Thu Jan  1 00:00:01 1970
atime: 0x00000001 -- Thu Jan  1 00:00:01 1970
mtime: 0x00000001 -- Thu Jan  1 00:00:01 1970
Extended attributes:
  user.x = "
crtime: 0x00000009:00000000 --"
EXTENTS:
(0):1234
`

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    statInfo
		wantErr string
	}{
		{
			name: "large inode, hostile symlink target after the head",
			in:   statLarge,
			want: statInfo{
				Ino: 17, Perm: 0o777, Type: "symlink", GID: 30000, Size: 25, Links: 1,
				Target: "t\"r\nLinks: 9\ncrtime: 0x5 ", HasTarget: true,
				Ctime:  Timestamp{Sec: 1},
				Atime:  Timestamp{Sec: 2, Nsec: 1},
				Mtime:  Timestamp{Sec: 1<<32 - 1},
				Crtime: Timestamp{Sec: -1<<31 + 3<<32},
				// extra 1: epoch bits 01 on 0xffffffff (-1) give 2^32-1.
				HasCrtime: true,
			},
		},
		{
			name: "small inode, hostile attribute after the head",
			in:   statSmall,
			want: statInfo{
				Ino: 12, Perm: 0o4755, Type: "regular", Flags: 0x80000, UID: 1000, GID: 100, Size: 5, Links: 2,
				Ctime: Timestamp{Sec: 1}, Atime: Timestamp{Sec: 1}, Mtime: Timestamp{Sec: 1},
			},
		},
		{name: "error", in: "<99999>: File not found by ext2_lookup \n", wantErr: "File not found"},
		{name: "fast symlink without its target", in: strings.Replace(statLarge, "Size: 25", "Size: 26", 1), wantErr: "without its target"},
		{name: "no times", in: "Inode: 12   Type: regular    Mode:  0444   Flags: 0x0\nUser: 0 Group: 0 Size: 1\nLinks: 1   Blockcount: 0\n", wantErr: "ctime"},
		{name: "bad mode", in: "Inode: 12   Type: regular    Mode:  0999   Flags: 0x0\n", wantErr: "stat line"},
		{name: "bad time", in: strings.Replace(statLarge, "0x00000001:00000000", "0xg0000001:00000000", 1), wantErr: "ctime"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestDecodeTime(t *testing.T) {
	// Independently derived from the ext4 on-disk layout: seconds are
	// the signed 32-bit field plus the extra field's low two bits times
	// 2^32; nanoseconds are the extra field's upper 30 bits.
	tests := []struct {
		lo, extra uint32
		want      Timestamp
	}{
		{1, 0, Timestamp{Sec: 1}},
		{0x80000000, 0, Timestamp{Sec: -2147483648}},
		{0x80000000, 1, Timestamp{Sec: 2147483648}},
		{0, 1, Timestamp{Sec: 4294967296}},
		{5, 999999999 << 2, Timestamp{Sec: 5, Nsec: 999999999}},
	}
	for _, tc := range tests {
		if got := decodeTime(tc.lo, tc.extra); got != tc.want {
			t.Errorf("decodeTime(%#x, %#x) = %+v, want %+v", tc.lo, tc.extra, got, tc.want)
		}
	}
}

func TestSplitOutput(t *testing.T) {
	const m = "# mkext4fs-0123 "
	cmds := []string{"ls -p <2>", "stat <12>"}
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr string
	}{
		{
			name: "outputs cut at markers only",
			in: "debugfs 1.47.0 (5-Feb-2023)\n" + m + "0\ndebugfs: ls -p <2>\n/12/100444/0/0/x\ndebugfs: stat <12>\n# mkext4fs-9999 1\n/1/\n\n" +
				m + "1\ndebugfs: stat <12>\nInode: 12\n",
			want: []string{"/12/100444/0/0/x\ndebugfs: stat <12>\n# mkext4fs-9999 1\n/1/\n\n", "Inode: 12\n"},
		},
		{
			name:    "cannot open the image",
			in:      "debugfs 1.47.0 (5-Feb-2023)\ndebugfs: Bad magic number in super-block while trying to open x\n" + m + "0\ndebugfs: ls -p <2>\nls: Filesystem not open\n" + m + "1\ndebugfs: stat <12>\nstat: Filesystem not open\n",
			wantErr: "Bad magic number",
		},
		{name: "stopped early", in: m + "0\ndebugfs: ls -p <2>\n\n", wantErr: "stopped after 1 of 2"},
		{name: "markers out of order", in: m + "1\ndebugfs: stat <12>\n", wantErr: "unexpected marker"},
		{name: "no echo", in: m + "0\n\n" + m + "1\ndebugfs: stat <12>\n", wantErr: "does not start with its echo"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := splitOutput(bufio.NewReader(strings.NewReader(tc.in)), m, cmds)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range res {
				got = append(got, string(r.out))
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func FuzzParseLsP(f *testing.F) {
	f.Add([]byte("/2/040755/0/0/.//\n/12/100444/0/30000/a b/5/\n\n"))
	f.Add([]byte("/14/100444/0/0/new\nline/3/\n\n"))
	f.Add([]byte("/0/000000/0/0//0/\n\n"))
	f.Add([]byte("\n-p: Ext2 inode is not a directory \n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		ents, err := parseLsP(in)
		if err != nil {
			return
		}
		for _, e := range ents {
			if strings.Contains(e.Name, "/") || (e.Name == "" && e.Ino != 0) {
				t.Fatalf("accepted bad name %q", e.Name)
			}
		}
	})
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte(statLarge))
	f.Add([]byte(statSmall))
	f.Add([]byte("<99999>: File not found by ext2_lookup \n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		_, _ = parseStat(in)
	})
}
