// A token file: calibration given as token ids instead of text (`prune --calib-tokens FILE`).
// Two formats, told apart by the first bytes:
//   - NumPy .npy (magic "\x93NUMPY", format versions 1, 2 and 3): C order, any shape (read
//     flat), dtype little-endian int32, int64, uint16 or uint32 ('<i4', '<i8', '<u2', '<u4'),
//     as numpy.save writes them;
//   - plain text: decimal ids separated by white space.
// The ids are used as they are (no BOS is added: the file is the token stream).
#pragma once
#include <stdint.h>

// Reads every id into *ids (malloc'ed, *n of them) and checks each lies in [0, vocab).
// SDS_ERR_INPUT naming the file (and the offset or index) for a missing or empty file, a
// malformed .npy header, an unsupported dtype or Fortran order, a truncated payload, a word
// that is not a non-negative integer, or an id outside the vocabulary.
int sds_token_file_read(const char *path, int64_t vocab, int32_t **ids, int64_t *n);
