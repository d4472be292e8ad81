// Opening input files with messages that name them.
#pragma once
#include <stdint.h>

// Opens PATH read-only; it must be a regular file. *fd and *size on success.
// Errors: SDS_ERR_INPUT for a missing path, one that cannot be opened or is not a regular file;
// SDS_ERR_IO when fstat fails.
int sds_file_open_regular(const char *path, int *fd, uint64_t *size);
