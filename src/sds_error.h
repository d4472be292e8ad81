// Status codes and the per-process error message (one thread per rank, so one buffer).
#pragma once
#include <stdio.h>
#include <stdlib.h>

// Exit codes: documented in README.md ("Exit codes"). Values are stable for scripts.
typedef enum {
    SDS_OK = 0,
    SDS_ERR_INTERNAL = 1,     // a bug: an invariant broke
    SDS_ERR_USAGE = 2,        // bad command line
    SDS_ERR_INPUT = 3,        // bad or missing input data (model, tokenizer, text)
    SDS_ERR_NUMERIC = 4,      // numerical failure (e.g. Cholesky after the last damping retry)
    SDS_ERR_IO = 5,           // the operating system refused a read or write
    SDS_ERR_CHECKPOINTED = 75 // checkpoint written after a signal: resubmit with --resume
} sds_code;

// Records the first error of this process (later ones are dropped) and returns code.
int sds_error_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// The recorded message ("" if none) and code (SDS_OK if none).
const char *sds_error_message(void);
int sds_error_code(void);
void sds_error_clear(void);
// Short name of a code ("usage", "input", ...).
const char *sds_code_name(int code);

// Invariants: a failure is a bug, so abort with file and line.
#define SDS_ASSERT(x)                                                                              \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #x);              \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

// Propagates a non-zero status code to the caller.
#define SDS_TRY(expr)                                                                              \
    do {                                                                                           \
        int sds_try_rc_ = (expr);                                                                  \
        if (sds_try_rc_ != SDS_OK) return sds_try_rc_;                                             \
    } while (0)

// malloc that aborts on exhaustion would hide the cause from other ranks: these return NULL
// after recording an SDS_ERR_INTERNAL-free message ("out of memory allocating N bytes for what").
void *sds_malloc(size_t bytes, const char *what);
void *sds_calloc(size_t n, size_t size, const char *what);

// Test hook (error injection): true when the environment variable SDS_TEST_FAIL lists
// "what:rank" for this `what` and `rank` (comma separated, e.g. "cholesky:3,write:1"). Used by
// the tests to make one rank of several fail in a given place; unset in normal runs.
int sds_test_fail(const char *what, int rank);
