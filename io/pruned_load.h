// Putting the weights of an sds-mpi prune output back into a model (eval --weights).
#pragma once
#include "model.h"

// Replaces every sublayer weight that the HDF5 file PATH holds. Every dataset must name a
// sublayer of m with the same shape (SDS_ERR_INPUT naming the file and the sublayer).
// *n_replaced gets the number of sublayers found (those of layers m does not hold, a pipeline
// stage's model, are checked by name only).
int sds_model_load_pruned(sds_model *m, const char *path, int64_t *n_replaced);
