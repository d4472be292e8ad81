// Writing JSON summaries atomically: a temporary name in the same directory, then a rename.
#pragma once
#include <jansson.h>

// Writes root to path (indented, doubles to 17 digits) and takes ownership of root.
// SDS_ERR_IO naming the file when it cannot be written; nothing is left behind then.
int sds_json_write_atomic(json_t *root, const char *path);
