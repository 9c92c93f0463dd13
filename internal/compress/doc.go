// Package compress writes the compressed form of a finished image.
//
// The zstd output is a sequence of independent zstd frames, one per
// FrameSize bytes of input (the last one shorter), each with its content
// size and checksum in the frame header. The zstd format allows frames to
// be concatenated: `zstd -d` and every other conforming decoder return the
// concatenation of the frames' contents. Cutting the input into frames is
// what lets several cores work on one stream; since the cut points depend
// only on FrameSize, the bytes written do not depend on the number of
// workers, so a compressed image is as reproducible as the image itself.
package compress
