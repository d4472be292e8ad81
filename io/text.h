// Reading whole text files (evaluation and calibration text).
#pragma once
#include <stddef.h>
#include <stdint.h>

// Reads PATH into a NUL-terminated malloc'ed buffer. SDS_ERR_INPUT naming the file when it does
// not exist, is a directory, or is empty; SDS_ERR_IO when a read fails.
int sds_text_read(const char *path, char **data, size_t *len);
