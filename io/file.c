#define _POSIX_C_SOURCE 200809L
#include "file.h"

#include "sds_error.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int sds_file_open_regular(const char *path, int *fd_out, uint64_t *size_out) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return sds_error_set(SDS_ERR_INPUT, "%s: no such file or directory", path);
        return sds_error_set(SDS_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return sds_error_set(SDS_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return sds_error_set(SDS_ERR_INPUT, "%s: not a regular file", path);
    }
    *fd_out = fd;
    *size_out = (uint64_t)sb.st_size;
    return SDS_OK;
}
