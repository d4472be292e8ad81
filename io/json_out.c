#include "json_out.h"

#include "sds_error.h"

#include <stdio.h>
#include <unistd.h>

int sds_json_write_atomic(json_t *root, const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int bad = json_dump_file(root, tmp, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    json_decref(root);
    if (bad != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return sds_error_set(SDS_ERR_IO, "%s: cannot write the JSON summary", path);
    }
    return SDS_OK;
}
