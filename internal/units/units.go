// Package units formats and parses the byte counts the command line and the
// build log show.
package units

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Bytes formats n for a build log: "512 B", "1.50 KiB", "2.31 GiB".
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.2f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

var sizeRE = regexp.MustCompile(`^([0-9]+)\s*([KMGT]?)(i?B?)$`)

// ParseSize reads a byte count: a number with an optional K, M, G or T
// suffix, binary (KiB, or K alone) or decimal (KB).
func ParseSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a size such as 0, 4096, 512KiB, 16MiB or 1GiB", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	base := int64(1024)
	if m[3] == "B" && m[2] != "" {
		base = 1000
	}
	mult := int64(1)
	for _, u := range "KMGT" {
		mult *= base
		if m[2] == string(u) {
			if n > (1<<62)/mult {
				return 0, fmt.Errorf("%q is too large", s)
			}
			return n * mult, nil
		}
	}
	return n, nil
}
