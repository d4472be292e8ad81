#include "sds_error.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static int g_code = SDS_OK;
static char g_msg[1024];

int sds_error_set(int code, const char *fmt, ...) {
    if (g_code != SDS_OK) return code;
    g_code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    return code;
}

const char *sds_error_message(void) {
    return g_msg;
}

int sds_error_code(void) {
    return g_code;
}

void sds_error_clear(void) {
    g_code = SDS_OK;
    g_msg[0] = '\0';
}

const char *sds_code_name(int code) {
    switch (code) {
    case SDS_OK:
        return "ok";
    case SDS_ERR_INTERNAL:
        return "internal";
    case SDS_ERR_USAGE:
        return "usage";
    case SDS_ERR_INPUT:
        return "input";
    case SDS_ERR_NUMERIC:
        return "numerical";
    case SDS_ERR_IO:
        return "io";
    case SDS_ERR_CHECKPOINTED:
        return "checkpointed";
    default:
        return "unknown";
    }
}

void *sds_malloc(size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) sds_error_set(SDS_ERR_IO, "out of memory allocating %zu bytes for %s", bytes, what);
    return p;
}

void *sds_calloc(size_t n, size_t size, const char *what) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        sds_error_set(SDS_ERR_IO, "out of memory allocating %zu x %zu bytes for %s", n, size, what);
    return p;
}

int sds_test_fail(const char *what, int rank) {
    const char *e = getenv("SDS_TEST_FAIL");
    if (!e) return 0;
    const size_t n = strlen(what);
    for (const char *p = e; *p;) {
        if (!strncmp(p, what, n) && p[n] == ':' && atoi(p + n + 1) == rank) return 1;
        p = strchr(p, ',');
        if (!p) break;
        p++;
    }
    return 0;
}
