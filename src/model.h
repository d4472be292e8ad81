// A decoder-only language model of any supported architecture, behind one small interface.
#pragma once
#include "llama.h"
#include "model_config.h"
#include "opt.h"

typedef struct {
    sds_arch arch;
    sds_model_config cfg;
    sds_opt_model opt;     // when arch == SDS_ARCH_OPT
    sds_llama_model llama; // when arch == SDS_ARCH_LLAMA
} sds_model;

typedef struct {
    sds_arch arch;
    sds_opt_work opt;
    sds_llama_work llama;
} sds_model_work;

void sds_model_free(sds_model *m);
// Scratch for sequences of up to T tokens.
int sds_model_work_alloc(sds_model_work *w, const sds_model *m, int64_t T);
void sds_model_work_free(sds_model_work *w);
// Sum of the NLL of tokens[1..T) given their prefixes, in double.
double sds_model_window_nll(const sds_model *m, const int32_t *tokens, int64_t T,
                            sds_model_work *w);
// logits (T,V) of one sequence ids (T), T <= the work's T.
void sds_model_forward_logits(const sds_model *m, const int32_t *ids, int64_t T, float *logits,
                              sds_model_work *w);
