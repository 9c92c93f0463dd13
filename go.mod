module github.com/mkext4fs/mkext4fs

go 1.22

require (
	github.com/klauspost/compress v1.18.0
	github.com/nix-community/go-nix v0.0.0-20250101154619-4bdde671e0a1
	golang.org/x/sys v0.30.0
)
