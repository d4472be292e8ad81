// tokenize_ids TOKENIZER_DIR TEXTFILE OUT.bin: the ids of the whole text (no BOS) as
// little-endian int32, for test_tokenizer.py to compare with Hugging Face. Prints the timing of
// the encode alone on stderr.
// tokenize_ids --lists TOKENS.txt MERGES.txt TEXTFILE OUT.bin: the same through
// sds_tokenizer_load_lists (one token per line, line i is id i; one "a b" merge per line).
#include "sds_error.h"
#include "tokenizer.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// The whole file, NUL-terminated; empty allowed (an empty text must give zero ids).
static int read_all(const char *path, char **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return sds_error_set(SDS_ERR_INPUT, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fclose(f);
            return sds_error_set(SDS_ERR_IO, "%s: out of memory", path);
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
        if (n == cap) {
            char *grown = realloc(buf, cap *= 2);
            if (!grown) free(buf);
            buf = grown;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return sds_error_set(SDS_ERR_IO, "%s: read error", path);
    }
    buf[n] = '\0'; // the loop always leaves n < cap
    *data = buf;
    *len = n;
    return SDS_OK;
}

static int write_ids(const char *path, const int32_t *ids, int64_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return sds_error_set(SDS_ERR_IO, "%s: %s", path, strerror(errno));
    for (int64_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)ids[i];
        unsigned char le[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                               (unsigned char)(v >> 24)};
        if (fwrite(le, 1, 4, f) != 4) break;
    }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) return sds_error_set(SDS_ERR_IO, "%s: write failed", path);
    return SDS_OK;
}

// Splits buf in place into its lines (a final newline ends the last line, it does not start one).
static char **split_lines(char *buf, size_t len, int64_t *n) {
    int64_t count = 0;
    for (size_t i = 0; i < len; i++) count += buf[i] == '\n';
    if (len > 0 && buf[len - 1] != '\n') count++;
    char **lines = malloc((size_t)(count > 0 ? count : 1) * sizeof *lines);
    if (!lines) return NULL;
    int64_t k = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len && k < count; i++) {
        if (i == len || buf[i] == '\n') {
            if (i < len) buf[i] = '\0';
            lines[k++] = buf + start;
            start = i + 1;
        }
    }
    *n = count;
    return lines;
}

static int load_lists(const char *tokens_path, const char *merges_path, sds_tokenizer **tok) {
    char *tokens_buf = NULL, *merges_buf = NULL;
    size_t tokens_len = 0, merges_len = 0;
    int rc = read_all(tokens_path, &tokens_buf, &tokens_len);
    if (rc == SDS_OK) rc = read_all(merges_path, &merges_buf, &merges_len);
    char **tokens = NULL, **merges = NULL;
    int64_t n_tokens = 0, n_merges = 0;
    if (rc == SDS_OK) {
        tokens = split_lines(tokens_buf, tokens_len, &n_tokens);
        merges = split_lines(merges_buf, merges_len, &n_merges);
        if (!tokens || !merges) rc = sds_error_set(SDS_ERR_IO, "out of memory");
    }
    if (rc == SDS_OK)
        rc = sds_tokenizer_load_lists(&(sds_tokenizer_lists){.source = tokens_path,
                                                             .tokens = (const char *const *)tokens,
                                                             .n_tokens = n_tokens,
                                                             .merges = (const char *const *)merges,
                                                             .n_merges = n_merges},
                                      tok);
    free(tokens);
    free(merges);
    free(tokens_buf);
    free(merges_buf);
    return rc;
}

static double now_s(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    bool lists = argc == 6 && strcmp(argv[1], "--lists") == 0;
    if (argc != 4 && !lists) {
        fprintf(stderr,
                "usage: %s TOKENIZER_DIR TEXTFILE OUT.bin\n"
                "       %s --lists TOKENS.txt MERGES.txt TEXTFILE OUT.bin\n",
                argv[0], argv[0]);
        return SDS_ERR_USAGE;
    }
    const char *text_path = argv[argc - 2], *out_path = argv[argc - 1];
    sds_tokenizer *tok = NULL;
    char *text = NULL;
    size_t len = 0;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    double t0 = now_s();
    int rc = lists ? load_lists(argv[2], argv[3], &tok) : sds_tokenizer_load_dir(argv[1], &tok);
    double t1 = now_s();
    if (rc == SDS_OK) rc = read_all(text_path, &text, &len);
    double t2 = now_s(), t3 = t2;
    if (rc == SDS_OK) {
        rc = sds_tokenizer_encode(tok, text, len, &ids, &n_ids);
        t3 = now_s();
        if (rc != SDS_OK) {
            fprintf(stderr, "tokenize_ids: %s: %s\n", text_path, sds_error_message());
            free(text);
            sds_tokenizer_free(tok);
            return rc;
        }
    }
    if (rc == SDS_OK) rc = write_ids(out_path, ids, n_ids);
    if (rc != SDS_OK) {
        fprintf(stderr, "tokenize_ids: %s\n", sds_error_message());
    } else {
        fprintf(stderr, "tokenize_ids: load %.3f s, encode %zu bytes -> %lld ids in %.3f s\n",
                t1 - t0, len, (long long)n_ids, t3 - t2);
    }
    free(ids);
    free(text);
    sds_tokenizer_free(tok);
    return rc;
}
