#include "text.h"

#include "sds_error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int sds_text_read(const char *path, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    struct stat sb;
    if (stat(path, &sb) != 0) return sds_error_set(SDS_ERR_INPUT, "%s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode))
        return sds_error_set(SDS_ERR_INPUT, "%s: is a directory, expected a text file", path);
    FILE *f = fopen(path, "rb");
    if (!f) return sds_error_set(SDS_ERR_INPUT, "%s: %s", path, strerror(errno));
    size_t cap = sb.st_size > 0 ? (size_t)sb.st_size + 1 : 4096, n = 0;
    char *buf = sds_malloc(cap, "text");
    if (!buf) {
        fclose(f);
        return SDS_ERR_IO;
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return sds_error_set(SDS_ERR_IO, "%s: out of memory reading", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return sds_error_set(SDS_ERR_IO, "%s: read error", path);
    }
    if (n == 0) {
        free(buf);
        return sds_error_set(SDS_ERR_INPUT, "%s: the text file is empty", path);
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return SDS_OK;
}
