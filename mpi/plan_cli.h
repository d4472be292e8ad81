// sds-mpi plan: per-stage memory and time of a prune run before anything heavy runs (SPEC 4),
// from src/plan.h's model with machine constants measured here (or read from --machine FILE).
#pragma once
#include <mpi.h>

// (collective) argv[0] is "plan". Parses the options (usage errors exit 2 naming the option),
// measures the constants (ping-pong between ranks 0 and 1 when there are two or more) and
// prints the plan on rank 0. Returns the agreed status on every rank.
int sds_plan_cli(MPI_Comm comm, int argc, char **argv);
