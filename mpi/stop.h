// Stopping a pruning run between layers: SIGTERM and SIGUSR1 ask the run to finish the layer it
// is on, checkpoint and exit with SDS_ERR_CHECKPOINTED (75).
#pragma once
#include <mpi.h>
#include <stdint.h>

// What asked for the stop (sds_stop_agree's result).
#define SDS_STOP_NONE 0
#define SDS_STOP_HOOK 1000 // the test hook SDS_TEST_STOP_AFTER_LAYER, not a signal

// (local) Installs the handlers for SIGTERM and SIGUSR1 (they only record the signal) and reads
// the test hook: SDS_TEST_STOP_AFTER_LAYER=N acts as if a signal had arrived during layer N.
// main calls it before MPI_Init, so that a signal during start-up is a request too rather than
// the default action (death); again is a no-op. The handlers stay until the process exits: a
// second signal while the ranks exit after a checkpoint must not turn exit 75 into a kill.
void sds_stop_install(void);

// (collective) After `layer` has completed: every rank gets the same answer, SDS_STOP_NONE to
// go on, else the largest signal number any rank received (or SDS_STOP_HOOK).
int sds_stop_agree(MPI_Comm comm, int64_t layer);
// "SIGTERM", "SIGUSR1" or "SDS_TEST_STOP_AFTER_LAYER" for an agreed stop.
const char *sds_stop_name(int why);
