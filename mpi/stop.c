#define _POSIX_C_SOURCE 200809L
#include "stop.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

// The handler may only touch a volatile sig_atomic_t; the layer loop polls it.
static volatile sig_atomic_t g_signal = 0;
static int g_installed = 0;
static int64_t g_hook_layer = -1; // SDS_TEST_STOP_AFTER_LAYER, -1 when unset

static void stop_handler(int sig) {
    g_signal = sig;
}

void sds_stop_install(void) {
    if (g_installed) return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = stop_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; // reads, writes and waits carry on; the flag is polled per layer
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    g_installed = 1;
    const char *hook = getenv("SDS_TEST_STOP_AFTER_LAYER");
    char *end = NULL;
    const long long v = hook && *hook ? strtoll(hook, &end, 10) : -1;
    g_hook_layer = hook && *hook && end && !*end && v >= 0 ? (int64_t)v : -1;
}

int sds_stop_agree(MPI_Comm comm, int64_t layer) {
    int mine = (int)g_signal;
    if (layer == g_hook_layer && mine == 0) mine = SDS_STOP_HOOK;
    int why = 0;
    MPI_Allreduce(&mine, &why, 1, MPI_INT, MPI_MAX, comm);
    return why;
}

const char *sds_stop_name(int why) {
    switch (why) {
    case SIGTERM:
        return "SIGTERM";
    case SIGUSR1:
        return "SIGUSR1";
    case SDS_STOP_HOOK:
        return "SDS_TEST_STOP_AFTER_LAYER";
    default:
        return "a signal";
    }
}
